"""The demo runner's registry: each app adds steps in its own `demo.py`.

`manage.py demo` imports every installed app's `demo` module and runs the registered
steps in order, on whatever database is configured (SQLite by default), with the built-in
sandboxes standing in for outside systems. Each step prints what it did.
"""

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TextIO

from django.conf import settings
from django.db.models import Q
from django.test.utils import override_settings

from core.models import ApiKey
from core.sandbox import SandboxServer, SlackSandbox
from core.services import api_key_create, api_key_revoke


@dataclass
class DemoContext:
    stdout: TextIO
    stack: ExitStack
    options: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")


@dataclass(frozen=True)
class DemoStep:
    order: int
    title: str
    run: Callable[[DemoContext], str | None]


_STEPS: dict[str, DemoStep] = {}


def demo_step(order: int, title: str) -> Callable:
    """Register a demo step; it returns a one-line result (printed after its title)."""

    def register(function: Callable[[DemoContext], str | None]) -> Callable:
        _STEPS[f"{function.__module__}.{function.__name__}"] = DemoStep(order, title, function)
        return function

    return register


def demo_run(ctx: DemoContext) -> None:
    steps = sorted(_STEPS.values(), key=lambda step: step.order)
    for number, step in enumerate(steps, start=1):
        started = time.perf_counter()
        result = step.run(ctx)
        elapsed = time.perf_counter() - started
        ctx.say(f"[{number}/{len(steps)}] {step.title}: {result or 'done'}  ({elapsed:.1f} s)")


@demo_step(10, "Slack sandbox")
def start_slack(ctx: DemoContext) -> str:
    if settings.SLACK_WEBHOOK_URL:
        return "alerts go to the configured SLACK_WEBHOOK_URL"
    app = SlackSandbox()
    server = ctx.stack.enter_context(SandboxServer(app))
    ctx.stack.enter_context(override_settings(SLACK_WEBHOOK_URL=server.url + app.webhook_path))
    ctx.facts["slack"] = app
    return f"listening on {server.url}; alerts are posted there"


@demo_step(900, "Alerts")
def report_alerts(ctx: DemoContext) -> str:
    app = ctx.facts.get("slack")
    if app is None:
        return "sent to the configured Slack webhook"
    titles: dict[str, int] = {}
    for message in app.messages:
        title = message["text"].split(":", 1)[0]
        titles[title] = titles.get(title, 0) + 1
    summary = ", ".join(f"{count} x {title}" for title, count in sorted(titles.items()))
    return f"{len(app.messages)} delivered to the Slack sandbox ({summary or 'none'})"


@demo_step(950, "API key")
def make_api_key(ctx: DemoContext) -> str:
    for old in ApiKey.objects.filter(Q(name="demo") & Q(revoked_at__isnull=True)):
        api_key_revoke(api_key=old, revoked_by="demo")
    created = api_key_create(name="demo", scopes=["read", "write"], created_by="demo")
    ctx.facts["api_key"] = created.key
    return f"'demo' (read, write): {created.key}"
