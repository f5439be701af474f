"""Charts as server-rendered SVG: offline, no script, nothing the Content-Security-Policy blocks.

Colours are presentation attributes (not `style=`), so the policy's `style-src` needs no
`unsafe-inline`; every point carries a `<title>` the browser shows on hover. Each chart is a
`<figure class="chart">` with an `aria-label` and a `<table>` of the same figures for screen
readers and for tests that read the numbers.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass
class Series:
    name: str
    values: list[float | None]  # one per label; None where there is no figure


@dataclass
class Chart:
    title: str
    labels: list[str]  # the x axis (days, channels, ...)
    series: list[Series] = field(default_factory=list)
    unit: str = ""  # printed after each value ("%", "s", " units")

    @property
    def has_data(self) -> bool:
        return any(v is not None for s in self.series for v in s.values)


def day_labels(days: Sequence[date]) -> list[str]:
    return [d.strftime("%m-%d") for d in days]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return f"{text}{unit}"


def _scale(chart: Chart) -> float:
    top = max((v for s in chart.series for v in s.values if v is not None), default=0)
    return float(top) or 1.0


def _axes(chart: Chart, top: float) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="#9ca3af" stroke-width="1"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" font-size="10" fill="#4b5563">'
        f"{escape(_fmt(top, chart.unit))}</text>",
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10" '
        'fill="#4b5563">0</text>',
    ]
    n = len(chart.labels)
    step = max(1, n // 8)
    for i, label in enumerate(chart.labels):
        if i % step:
            continue
        x = LEFT + (i + 0.5) * (WIDTH - LEFT - RIGHT) / max(n, 1)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="10" '
            f'fill="#4b5563">{escape(label)}</text>'
        )
    return parts


def _legend_and_table(chart: Chart) -> str:
    legend = "".join(
        format_html(
            '<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
            'fill="{}"/></svg> {}</li>',
            PALETTE[i % len(PALETTE)],
            s.name,
        )
        for i, s in enumerate(chart.series)
    )
    head = "".join(format_html("<th scope='col'>{}</th>", s.name) for s in chart.series)
    rows = "".join(
        format_html(
            "<tr><th scope='row'>{}</th>{}</tr>",
            label,
            mark_safe(  # noqa: S308
                "".join(
                    format_html("<td>{}</td>", _fmt(s.values[i], chart.unit)) for s in chart.series
                )
            ),
        )
        for i, label in enumerate(chart.labels)
    )
    return (
        f'<ul class="chart-legend">{legend}</ul>'
        f'<details class="chart-figures"><summary>Figures</summary><table>'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _figure(chart: Chart, body: list[str]) -> SafeString:
    svg = (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>'
    )
    empty = "" if chart.has_data else '<p class="chart-empty">No data in this period.</p>'
    return mark_safe(  # noqa: S308 - every text above went through escape()/format_html()
        f'<figure class="chart" aria-label="{escape(chart.title)}">'
        f"<figcaption>{escape(chart.title)}</figcaption>{empty}{svg}"
        f"{_legend_and_table(chart)}</figure>"
    )


def line_chart(chart: Chart) -> SafeString:
    """Render one line per series over the labels (days), points titled with their value."""
    top = _scale(chart)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(chart.labels), 1)
    body = _axes(chart, top)
    for i, s in enumerate(chart.series):
        colour = PALETTE[i % len(PALETTE)]
        points = []
        for j, value in enumerate(s.values):
            if value is None:
                continue
            x = LEFT + (j + 0.5) * plot_w / n
            y = TOP + plot_h - float(value) / top * plot_h
            points.append((x, y, j, value))
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for x, y, j, value in points:
            tip = escape(f"{s.name}, {chart.labels[j]}: {_fmt(value, chart.unit)}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{tip}</title>'
                "</circle>"
            )
    return _figure(chart, body)


def bar_chart(chart: Chart) -> SafeString:
    """Render grouped bars: one group per label, one bar per series."""
    top = _scale(chart)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(chart.labels), 1)
    group_w = plot_w / n
    bar_w = max(1.0, group_w * 0.8 / max(len(chart.series), 1))
    body = _axes(chart, top)
    for i, s in enumerate(chart.series):
        colour = PALETTE[i % len(PALETTE)]
        for j, value in enumerate(s.values):
            if value is None:
                continue
            h = float(value) / top * plot_h
            x = LEFT + j * group_w + group_w * 0.1 + i * bar_w
            tip = escape(f"{s.name}, {chart.labels[j]}: {_fmt(value, chart.unit)}")
            body.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{tip}</title></rect>'
            )
    return _figure(chart, body)
