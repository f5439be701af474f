"""The console for API keys, dead letters and idempotency records."""

import functools
import json
from collections.abc import Callable

from axes import admin as axes_admin
from axes.models import AccessAttempt
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import PeriodicTask

from core.errors import DomainError
from core.models import ApiKey, DeadLetter, IdempotencyRecord
from core.services import (
    api_key_create,
    api_key_revoke,
    api_key_update,
    dead_letter_resolve,
    dead_letter_retry,
)


def actor_of(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


class KeptRecordAdmin(admin.ModelAdmin):
    """Rows that only services write and that are kept: no add or delete from the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# --- API keys ---------------------------------------------------------------------------------


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "rate_limit_per_minute"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "name",
        "prefix",
        "scope_list",
        "rate_limit_per_minute",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = [
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    ]
    actions = ["revoke_keys"]

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the key's history stays

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.Form, change: bool) -> None:
        data = form.cleaned_data
        if change:
            api_key_update(
                api_key=obj,
                name=data["name"],
                scopes=data["scopes"],
                rate_limit_per_minute=data["rate_limit_per_minute"],
            )
            return
        created = api_key_create(
            name=data["name"],
            scopes=data["scopes"],
            rate_limit_per_minute=data["rate_limit_per_minute"],
            created_by=actor_of(request),
        )
        obj.pk = created.api_key.pk
        obj.prefix = created.api_key.prefix
        self.message_user(
            request,
            format_html(
                "Copy this API key now; it is not shown again: <code id='new-api-key'>{}</code>",
                created.key,
            ),
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key, revoked_by=actor_of(request))
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


# --- Dead letters -----------------------------------------------------------------------------


class ResolveForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="How it was resolved (kept with the dead letter).",
    )


@admin.register(DeadLetter)
class DeadLetterAdmin(KeptRecordAdmin):
    list_display = [
        "id",
        "task_name",
        "source",
        "status",
        "attempts",
        "error_class",
        "short_error",
        "last_failed_at",
    ]
    list_filter = ["status", "source", "task_name"]
    search_fields = ["task_name", "error_message", "correlation_id", "task_id"]
    date_hierarchy = "last_failed_at"
    actions = ["retry_selected", "resolve_selected"]
    readonly_fields = [
        "source",
        "task_name",
        "task_id",
        "pretty_args",
        "pretty_kwargs",
        "error_class",
        "error_message",
        "traceback",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "correlation_id",
        "status",
        "retry_count",
        "retried_at",
        "resolved_by",
        "resolved_at",
        "note",
    ]
    exclude = ["args", "kwargs", "fingerprint"]

    @admin.display(description="error")
    def short_error(self, obj: DeadLetter) -> str:
        return obj.error_message[:120]

    @admin.display(description="args")
    def pretty_args(self, obj: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.args, indent=2))

    @admin.display(description="kwargs")
    def pretty_kwargs(self, obj: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.kwargs, indent=2))

    @admin.action(description="Retry: re-enqueue the original task", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        retried, refused = 0, []
        for letter in queryset:
            try:
                dead_letter_retry(dead_letter=letter, actor=actor_of(request))
                retried += 1
            except DomainError as exc:
                refused.append(f"#{letter.pk}: {exc.message}")
        self.message_user(request, f"Re-enqueued {retried} task(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not retried: " + "; ".join(refused), messages.WARNING)

    @admin.action(description="Resolve with a note", permissions=["change"])
    def resolve_selected(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter]
    ) -> HttpResponse | None:
        if "apply" in request.POST:
            form = ResolveForm(request.POST)
            if form.is_valid():
                resolved, refused = 0, []
                for letter in queryset:
                    try:
                        dead_letter_resolve(
                            dead_letter=letter,
                            actor=actor_of(request),
                            note=form.cleaned_data["note"],
                        )
                        resolved += 1
                    except DomainError as exc:
                        refused.append(f"#{letter.pk}: {exc.message}")
                self.message_user(request, f"Resolved {resolved} dead letter(s).", messages.SUCCESS)
                if refused:
                    self.message_user(
                        request, "Not resolved: " + "; ".join(refused), messages.WARNING
                    )
                return None
        else:
            form = ResolveForm()
        return TemplateResponse(
            request,
            "admin/core/deadletter/resolve.html",
            {
                **self.admin_site.each_context(request),
                "title": "Resolve dead letters",
                "opts": self.model._meta,
                "letters": queryset,
                "form": form,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["key", "owner", "method", "path", "status", "response_status", "created_at"]
    list_filter = ["status", "method"]
    search_fields = ["key", "owner", "path"]
    readonly_fields = [
        "owner",
        "key",
        "method",
        "path",
        "fingerprint",
        "status",
        "response_status",
        "response_body",
        "expires_at",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# --- Third-party consoles: their actions declare no permission -------------------------------


def _needs(permission: str, action: Callable) -> Callable:
    """Copy a third-party admin action, asking for the permission it does not declare."""

    @functools.wraps(action)
    def guarded(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet):
        return action(modeladmin, request, queryset)

    guarded.allowed_permissions = (permission,)
    return guarded


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    """django-celery-beat's console, whose actions (run, enable, disable) need "change"."""

    enable_tasks = _needs("change", beat_admin.PeriodicTaskAdmin.enable_tasks)
    disable_tasks = _needs("change", beat_admin.PeriodicTaskAdmin.disable_tasks)
    toggle_tasks = _needs("change", beat_admin.PeriodicTaskAdmin.toggle_tasks)
    run_tasks = _needs("change", beat_admin.PeriodicTaskAdmin.run_tasks)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    """django-axes' failed logins; deleting rows lifts lockouts, so it needs "delete"."""

    cleanup_expired_attempts = _needs(
        "delete", axes_admin.AccessAttemptAdmin.cleanup_expired_attempts
    )


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)
