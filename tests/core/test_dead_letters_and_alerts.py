import pytest
from django.db import transaction
from django.test import override_settings
from kombu.exceptions import OperationalError

from core.errors import DomainError
from core.models import DeadLetter
from core.sandbox import Fault, SandboxServer, SlackSandbox
from core.services import alert_send, dead_letter_record, dead_letter_resolve, dead_letter_retry
from core.tasks import alert_post
from inventory.models import StockLevel
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db


def raise_alert(capture, **kwargs) -> None:
    with capture(execute=True):  # alerts go out after commit
        alert_send(**{"title": "Test", "text": "something happened", **kwargs})


def test_alert_is_posted_to_slack(slack, django_capture_on_commit_callbacks):
    raise_alert(django_capture_on_commit_callbacks, fields={"SKU": "A-1"})

    [message] = slack.messages
    assert message["text"] == "Test: something happened"
    assert message["blocks"][1]["fields"][0]["text"] == "*SKU*\nA-1"


def test_identical_alerts_are_suppressed_within_the_window(
    slack, django_capture_on_commit_callbacks, log_lines
):
    raise_alert(django_capture_on_commit_callbacks, key="k")
    raise_alert(django_capture_on_commit_callbacks, key="k", text="other text")
    raise_alert(django_capture_on_commit_callbacks, key="another")

    assert [m["text"] for m in slack.messages] == [
        "Test: something happened",
        "Test: something happened",
    ]
    assert [line["event"] for line in log_lines() if line["event"].startswith("alert.")].count(
        "alert.suppressed"
    ) == 1


def test_without_a_webhook_url_alerts_are_only_logged(
    django_capture_on_commit_callbacks, log_lines
):
    with override_settings(SLACK_WEBHOOK_URL=""):
        raise_alert(django_capture_on_commit_callbacks)
    events = [line["event"] for line in log_lines()]
    assert "alert.raised" in events
    assert "http.request" not in events


def test_an_alert_of_a_rolled_back_change_is_not_sent_nor_suppressed(
    slack, django_capture_on_commit_callbacks
):
    def failing_change():
        with transaction.atomic():
            alert_send(title="Test", text="never", key="k")
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        failing_change()
    raise_alert(django_capture_on_commit_callbacks, key="k", text="after")

    assert [m["text"] for m in slack.messages] == ["Test: after"]


def test_inline_failure_goes_to_the_dead_letter_queue_at_once(slack):
    # Eager (the embedded default): no retry loop inside the caller.
    slack.inject(Fault(status=503, count=5))

    alert_post.delay({"text": "down"})

    letter = DeadLetter.objects.get()
    assert letter.attempts == 1
    assert len(slack.requests) == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_slack_5xx_and_429_are_retried_until_delivered(celery_worker, slack, settings):
    settings.ALERT_RETRY_BACKOFF_SECONDS = 0.05
    slack.inject(Fault(status=500, count=2, body="rollup_error"))
    slack.inject(Fault(status=429, count=1, body="rate_limited", headers={"Retry-After": "1"}))

    alert_post.delay({"text": "eventually"})

    wait_for(lambda: slack.messages)
    assert [m["text"] for m in slack.messages] == ["eventually"]
    assert len(slack.requests) == 4
    assert not DeadLetter.objects.exists()


def test_slack_refusal_lands_in_the_dead_letter_queue(slack):
    with override_settings(
        SLACK_WEBHOOK_URL=slack.server.url + "/services/T0SANDBOX/B0SANDBOX/bad"
    ):
        alert_post.delay({"text": "lost?"})

    letter = DeadLetter.objects.get()
    assert letter.task_name == "core.alert_post"
    assert letter.source == "alerts"
    assert letter.args == [{"text": "lost?"}]
    assert letter.error_class == "core.tasks.AlertRejected"
    assert "403" in letter.error_message
    assert letter.status == DeadLetter.Status.OPEN
    assert len(slack.requests) == 1  # a 4xx is final: no retries


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_retries_exhausted_land_in_the_dead_letter_queue(celery_worker, slack, settings):
    settings.ALERT_RETRY_BACKOFF_SECONDS = 0.01
    slack.inject(Fault(status=503, count=50))

    alert_post.delay({"text": "down"})

    wait_for(DeadLetter.objects.exists, timeout=30)
    letter = DeadLetter.objects.get()
    assert letter.attempts == alert_post.max_retries + 1
    assert len(slack.requests) == alert_post.max_retries + 1


def test_a_dead_letter_retried_runs_the_original_task(slack, django_capture_on_commit_callbacks):
    slack.inject(Fault(status=503, count=50))
    alert_post.delay({"text": "second chance"})
    letter = DeadLetter.objects.get()
    slack.reset()  # the outage is over

    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_retry(dead_letter=letter, actor="user:ops")

    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RETRIED
    assert letter.retry_count == 1
    assert [m["text"] for m in slack.messages] == ["second chance"]


def test_the_same_failure_again_updates_one_row():
    for _ in range(3):
        dead_letter_record(
            source="test", task_name="x.y", args=[1], error=RuntimeError("boom"), attempts=2
        )
    dead_letter_record(source="test", task_name="x.y", args=[2], error=RuntimeError("boom"))

    rows = {tuple(d.args): d.attempts for d in DeadLetter.objects.all()}
    assert rows == {(1,): 6, (2,): 1}


def test_two_people_retrying_at_once_enqueue_once(slack, django_capture_on_commit_callbacks):
    letter = dead_letter_record(
        source="test", task_name="core.alert_post", args=[{"text": "x"}], error=RuntimeError("boom")
    )
    seen_by_second = DeadLetter.objects.get(pk=letter.pk)

    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_retry(dead_letter=letter, actor="user:a")
        with pytest.raises(DomainError) as caught:
            dead_letter_retry(dead_letter=seen_by_second, actor="user:b")

    assert caught.value.code == "dead_letter_changed"
    assert len(slack.messages) == 1
    assert DeadLetter.objects.get(pk=letter.pk).retry_count == 1


def test_a_broker_outage_after_commit_does_not_fail_the_committed_change(
    api, stocked, monkeypatch, slack, django_capture_on_commit_callbacks, log_lines
):
    # Fault injection: the broker refuses the alert task, as a dead broker does.
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    monkeypatch.setattr(alert_post, "delay", refuse)
    product = stocked(10)
    StockLevel.objects.filter(product=product).update(min_stock=5)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/stock-mutations/",
            {"sku": product.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "-6"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="outage",
        )

    assert response.status_code == 201
    assert StockLevel.objects.get(product=product).on_hand == 4
    assert any(line["event"] == "alert.enqueue_failed" for line in log_lines())


def test_resolving_needs_a_note_and_blocks_retry():
    letter = dead_letter_record(source="test", task_name="x.y", error=RuntimeError("boom"))
    with pytest.raises(DomainError):
        dead_letter_resolve(dead_letter=letter, actor="user:ops", note="  ")

    dead_letter_resolve(dead_letter=letter, actor="user:ops", note="fixed the mapping by hand")

    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RESOLVED
    assert letter.resolved_by == "user:ops"
    with pytest.raises(DomainError):
        dead_letter_retry(dead_letter=letter, actor="user:ops")


def test_the_webhook_url_never_reaches_logs_or_dead_letters(slack, log_lines):
    alert_post.delay({"text": "hello"})
    with SandboxServer(SlackSandbox()) as closed:
        gone = closed.url
    with override_settings(SLACK_WEBHOOK_URL=gone + "/services/T0SANDBOX/B0SANDBOX/sandbox-token"):
        alert_post.delay({"text": "to a closed port"})

    letter = DeadLetter.objects.get()
    assert letter.error_class == "core.http.OutboundError"
    written = str(log_lines()) + letter.error_message + letter.traceback
    assert "sandbox-token" not in written
    assert "B0SANDBOX" not in written
    assert [m["text"] for m in slack.messages] == ["hello"]


@pytest.mark.django_db(transaction=True)
def test_a_retry_that_cannot_be_queued_leaves_the_letter_open(monkeypatch):
    letter = dead_letter_record(source="t", task_name="core.alert_post", error=RuntimeError("x"))

    # Fault injection: the broker refuses the task, as a dead broker does.
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    monkeypatch.setattr("core.services.dead_letters._task_enqueue", refuse)

    with pytest.raises(DomainError) as caught:
        dead_letter_retry(dead_letter=letter, actor="user:ops")

    assert caught.value.code == "enqueue_failed"
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.OPEN
