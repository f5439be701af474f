"""Admin actions: each declares its permission, and view-only staff can run none of them.

Every action of every registered ModelAdmin is enumerated (not listed by hand), so an action
added later without a permission fails here.
"""

import functools
from collections.abc import Callable, Iterator

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from erp_mapping.models import SyncRun

pytestmark = pytest.mark.django_db

ActionRef = tuple[type, admin.ModelAdmin, str, Callable]


def _every_action() -> Iterator[ActionRef]:
    for model, model_admin in admin.site._registry.items():
        # The base actions are all the admin could offer (its own and the site-wide ones),
        # before any permission filtering.
        for func, name, _description in model_admin._get_base_actions():
            yield model, model_admin, name, func


def _changelist(model: type) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


@pytest.fixture
def recorded_actions(monkeypatch) -> list[tuple[str, str]]:
    """Replace every action by a recorder that keeps its permissions and description."""
    calls: list[tuple[str, str]] = []
    for _model, model_admin, name, func in _every_action():

        def record(modeladmin, request, queryset, _name=name):
            calls.append((modeladmin.model._meta.label, _name))

        functools.update_wrapper(record, func)
        if hasattr(type(model_admin), name):
            monkeypatch.setattr(type(model_admin), name, record)
        else:
            monkeypatch.setitem(admin.site._actions, name, record)
    return calls


@pytest.fixture
def view_only_client() -> Client:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser_client() -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def _forge(client: Client, model: type, name: str):
    # select_across runs the action on the whole (possibly empty) list, so no row is needed;
    # the admin still wants some selected id before it looks at the action.
    return client.post(
        _changelist(model),
        {"action": name, "index": "0", "select_across": "1", "_selected_action": "0"},
    )


def test_admin_actions_every_action_declares_a_permission():
    undeclared = [
        f"{model._meta.label}.{name}"
        for model, _model_admin, name, func in _every_action()
        if not getattr(func, "allowed_permissions", None)
    ]

    assert undeclared == []


def test_admin_actions_view_only_staff_are_offered_none(view_only_client):
    offered = {}
    for model in admin.site._registry:
        response = view_only_client.get(_changelist(model))
        assert response.status_code == 200, model._meta.label
        if response.context["action_form"] is not None:
            offered[model._meta.label] = response.context["action_form"].fields["action"].choices

    assert offered == {}


def test_admin_actions_forged_posts_from_view_only_staff_do_nothing(
    recorded_actions, view_only_client, superuser_client
):
    checked = []
    for model, _model_admin, name, _func in _every_action():
        # given: the same forged POST reaches the action for a superuser, when it is offered
        recorded_actions.clear()
        _forge(superuser_client, model, name)
        if recorded_actions:
            assert recorded_actions == [(model._meta.label, name)]
            checked.append(f"{model._meta.label}.{name}")
        recorded_actions.clear()

        # when
        _forge(view_only_client, model, name)

        # then
        assert recorded_actions == [], f"{model._meta.label}.{name} ran for view-only staff"

    # Every custom console action was really reachable, so the refusals above mean something.
    for expected in [
        "core.ApiKey.revoke_keys",
        "core.DeadLetter.retry_selected",
        "core.DeadLetter.resolve_selected",
        "inventory.Reservation.release_selected",
        "erp_mapping.ErpCodeMapping.activate_selected",
        "erp_mapping.ErpCodeMapping.deactivate_selected",
        "erp_mapping.ErpConnection.pull_now",
        "erp_mapping.ErpConnection.dry_run_now",
        "erp_mapping.SyncRun.pull_now",
        "erp_mapping.ErpAgent.rotate_tokens",
        "channels_sync.Channel.push_now",
        "channels_sync.ChannelListing.retry_selected",
        "channels_sync.Conflict.resolve_use_ours",
        "channels_sync.Conflict.resolve_ignore",
    ]:
        assert expected in checked


def test_admin_actions_pull_needs_change_on_the_connection(view_only_client):
    # given: a viewer who may also change ERP connections
    user = User.objects.get(username="viewer")
    user.user_permissions.add(Permission.objects.get(codename="change_erpconnection"))

    # when
    response = view_only_client.get(_changelist(SyncRun))

    # then: runs themselves are never changed, yet their pull action is offered
    names = [choice for choice, _label in response.context["action_form"].fields["action"].choices]
    assert "pull_now" in names
