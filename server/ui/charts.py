"""SVG charts drawn on the server with pygal, inlined into the page.

pygal builds the SVG with ElementTree, so every label (key names are user input) is escaped
as XML text. Its optional JavaScript (tooltips, fetched from a CDN) is off: ``js=[]``, and the
one inline ``<script>`` it still writes (a config object for that JavaScript) is removed, so
the pages run no script at all (their Content-Security-Policy allows none). The figures behind
each chart are also in a table beside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pygal
from markupsafe import Markup
from pygal.style import Style

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S)

_STYLE = Style(
    background="transparent",
    plot_background="#ffffff",
    foreground="#1f2933",
    foreground_strong="#1f2933",
    foreground_subtle="#7b8794",
    colors=("#2f6fde", "#e0703a", "#34a37e", "#9a5bd3", "#c9a227"),
    font_family="system-ui, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    title_font_size=14,
)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    stacked: bool = False,
    value_format: str = "{:g}",
) -> Markup:
    """A (stacked) bar chart of ``series`` over ``labels`` as inline SVG markup."""
    kind = pygal.StackedBar if stacked else pygal.Bar
    chart = kind(
        title=title,
        style=_STYLE,
        js=[],
        disable_xml_declaration=True,
        width=560,
        height=280,
        # A handful of y labels, whole numbers where the values are.
        max_scale=6,
        min_scale=3,
        show_legend=len(series) > 1,
        legend_at_bottom=True,
        legend_at_bottom_columns=len(series),
        x_label_rotation=-30 if len(labels) > 10 else 0,
        show_minor_x_labels=len(labels) <= 14,
        x_labels_major_every=max(len(labels) // 7, 1),
        value_formatter=lambda v: value_format.format(v),
        margin=8,
        print_zeroes=False,
    )
    chart.x_labels = list(labels)
    for name, values in series:
        chart.add(name, list(values))
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    # pygal's own output, built with ElementTree (escaped); safe to inline as is.
    return Markup(svg)
