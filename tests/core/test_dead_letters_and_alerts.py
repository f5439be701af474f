import pytest
from django.test import override_settings

from core.errors import DomainError
from core.models import DeadLetter
from core.sandbox import Fault
from core.services import alert_send, dead_letter_record, dead_letter_resolve, dead_letter_retry
from core.tasks import alert_post

pytestmark = pytest.mark.django_db


def raise_alert(capture, **kwargs) -> bool:
    with capture(execute=True):
        return alert_send(**{"title": "Test", "text": "something happened", **kwargs})


def test_alert_is_posted_to_slack(slack, django_capture_on_commit_callbacks):
    assert raise_alert(django_capture_on_commit_callbacks, fields={"SKU": "A-1"}) is True

    [message] = slack.messages
    assert message["text"] == "Test: something happened"
    assert message["blocks"][1]["fields"][0]["text"] == "*SKU*\nA-1"


def test_identical_alerts_are_suppressed_within_the_window(
    slack, django_capture_on_commit_callbacks, log_lines
):
    first = raise_alert(django_capture_on_commit_callbacks, key="k")
    second = raise_alert(django_capture_on_commit_callbacks, key="k", text="other text")
    third = raise_alert(django_capture_on_commit_callbacks, key="another")

    assert (first, second, third) == (True, False, True)
    assert len(slack.messages) == 2
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


def test_slack_5xx_and_429_are_retried_until_delivered(slack):
    slack.inject(Fault(status=500, count=2, body="rollup_error"))
    slack.inject(Fault(status=429, count=1, body="rate_limited", headers={"Retry-After": "1"}))

    alert_post.delay({"text": "eventually"})

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


def test_retries_exhausted_land_in_the_dead_letter_queue(slack):
    slack.inject(Fault(status=503, count=50))

    alert_post.delay({"text": "down"})

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
