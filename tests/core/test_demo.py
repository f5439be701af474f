import io

import pytest
from django.core.management import call_command
from django.core.management.base import OutputWrapper
from django.test import override_settings

from core import demo
from core.demo import DemoContext, DemoStep, ProgressBar
from tests.core.test_checks import env_example
from tests.inventory.factories import default_vendor


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_demo_run_prints_each_step_title_when_it_starts(monkeypatch):
    # given a step that is still running (here: it fails) when it is looked at
    def running(ctx: DemoContext) -> str:
        raise RuntimeError("still running")

    monkeypatch.setattr(demo, "_STEPS", {"slow": DemoStep(1, "Slow step", running)})
    out = io.StringIO()

    # when
    with pytest.raises(RuntimeError):
        demo.demo_run(DemoContext(stdout=out, stack=None, options={}))

    # then its title is already out
    assert out.getvalue() == "[1/1] Slow step ...\n"


def test_progress_bar_redraws_in_place_on_a_terminal():
    out = Terminal()
    bar = ProgressBar(OutputWrapper(out), total=4, label="rows", delay=0, interval=0)

    assert list(bar.wrap(range(4))) == [0, 1, 2, 3]

    text = out.getvalue()
    assert text.count("\r") == 5  # one redraw per item, then the final state
    assert text.endswith("\r    rows [##############################] 4/4 100%  0 s\n")
    assert "\n" not in text[:-1]


def test_progress_bar_writes_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    bar = ProgressBar(out, total=2, delay=0, interval=0)

    list(bar.wrap(["a", "b"]))

    assert out.getvalue().splitlines() == [
        "    [###############...............] 1/2  50%  0 s",
        "    [##############################] 2/2 100%  0 s",
    ]


def test_progress_bar_stays_silent_on_short_loops():
    out = Terminal()

    list(ProgressBar(out, total=1000).wrap(range(1000)))

    assert out.getvalue() == ""


@pytest.mark.django_db(transaction=True)
def test_demo_runs_with_the_allowed_hosts_of_env_example():
    # given DJANGO_ALLOWED_HOSTS as `cp .env.example .env` sets it (no `testserver`)
    default_vendor()
    hosts = env_example()["DJANGO_ALLOWED_HOSTS"].split(",")
    out = io.StringIO()

    # when
    with override_settings(ALLOWED_HOSTS=hosts):
        call_command("demo", "--products", "20", "--operations", "20", stdout=out)

    # then the in-process API calls (agent registration, ingest) were answered
    text = out.getvalue()
    assert "[6/20] ERP agent ...\n" in text
    assert "ERP agent: registered for vendor 971a1d7b" in text
    assert "heartbeat: online" in text
