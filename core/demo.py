"""The demo runner's registry: each app adds steps in its own `demo.py`.

`manage.py demo` imports every installed app's `demo` module and runs the registered
steps in order, on whatever database is configured (SQLite by default), with the built-in
sandboxes standing in for outside systems. Each step prints its title when it starts, a
progress bar while a long loop runs (`ctx.progress`), and what it did when it ends.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import OutputWrapper
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

    def progress(self, items: Iterable, *, total: int, label: str = "") -> Iterator:
        """Yield `items`, drawing a progress bar once the loop has run a second."""
        return iter(self.progress_bar(total=total, label=label).wrap(items))

    def progress_bar(self, *, total: int, label: str = "") -> "ProgressBar":
        """A bar to `update(done)` by hand (a context manager: it closes on exit)."""
        return ProgressBar(self.stdout, total=total, label=label)


class ProgressBar:
    """A line-based progress bar: redrawn in place on a terminal, a line every few seconds
    otherwise, nothing for loops that end within `delay` seconds."""

    WIDTH = 30

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int,
        label: str = "",
        delay: float = 1.0,
        interval: float | None = None,
    ) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.label = label
        self.delay = delay
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        # Redrawing in place is cheap; a log file or pipe gets a line every few seconds.
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.drawn = False
        self.closed = False
        self.done = 0
        self.started = time.perf_counter()
        self.next_draw = self.started + delay

    def wrap(self, items: Iterable) -> Iterator:
        for done, item in enumerate(items, start=1):
            yield item
            self.update(done)
        self.close()

    def update(self, done: int) -> None:
        """Record that `done` of `total` are finished; draw when it is time to."""
        self.done = done
        now = time.perf_counter()
        if now >= self.next_draw:
            self.draw(done, now - self.started)
            self.next_draw = now + self.interval

    def close(self) -> None:
        """Draw the final state (only if the bar was shown at all); idempotent."""
        if self.drawn and not self.closed:
            self.closed = True
            self.draw(self.done, time.perf_counter() - self.started, final=True)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _write(self, text: str) -> None:
        # A command's OutputWrapper ends every write with a newline unless told not to.
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending="")
        else:
            self.stream.write(text)

    def render(self, done: int, elapsed: float) -> str:
        share = min(done / self.total, 1.0)
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        label = f"{self.label} " if self.label else ""
        return f"    {label}[{bar}] {done:,}/{self.total:,} {share:4.0%}  {elapsed:.0f} s"

    def draw(self, done: int, elapsed: float, *, final: bool = False) -> None:
        line = self.render(done, elapsed)
        if self.tty:
            # Carriage return: the bar redraws itself on one line until the loop ends.
            self._write("\r" + line + ("\n" if final else ""))
        elif not final:
            self._write(line + "\n")
        self.stream.flush()
        self.drawn = True


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
    """Run the registered steps in order: the title when a step starts, with its result at
    its end."""
    steps = sorted(_STEPS.values(), key=lambda step: step.order)
    for number, step in enumerate(steps, start=1):
        ctx.say(f"[{number}/{len(steps)}] {step.title} ...")
        ctx.stdout.flush()
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
