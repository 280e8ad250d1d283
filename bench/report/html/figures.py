"""report.html's plots, drawn by plotly (plotly.js, inlined once by bench/report/html/page.py): the
RTT heatmap, latency CDFs and CPU over the run.  Each function returns an HTML fragment (a div
and the script that draws it); nothing here fetches anything.

The heatmap stays readable at 1,000 nodes: control planes come first with a line between the
groups, a menu re-sorts both axes (slowest node first) without resending the data (category
order), plotly's zoom and pan work on it, and axis labels thin out by themselves.  It is given
to plotly as columns, one (agent, peer, p99) triple per measured direction with its hover
details (plotly.js lays them out on the nodes x nodes grid in the browser), so the page and the
coordinator hold a few thousand numbers at 1,000 nodes, not a million positions mostly empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from talbench.bench.report.html.data import Cdf, RttMatrix, Series

CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png"}}
# green -> yellow -> red at the threshold -> dark red beyond it
_GOOD, _HALF, _LIMIT, _BEYOND = "#1a9850", "#fee08b", "#d73027", "#4d0019"


def fragment(figure: go.Figure, div_id: str) -> str:
    return str(pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id, config=CONFIG))


def _ms(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value * 1e3, 4)


def _colorscale(highest_ms: float, threshold_ms: float | None) -> tuple[list[list[Any]] | str, float]:
    if threshold_ms is None or threshold_ms <= 0:
        return "Viridis", max(highest_ms, 1e-3)
    top = max(highest_ms, threshold_ms)
    at = threshold_ms / top
    scale: list[list[Any]] = [[0.0, _GOOD], [at / 2, _HALF], [at, _LIMIT]]
    if at < 1:
        scale.append([1.0, _BEYOND])
    return scale, top


def heatmap(matrix: RttMatrix, threshold_s: float | None, div_id: str = "rtt-heatmap") -> str:
    names = list(matrix.nodes)
    cells = matrix.cells
    highest = max((ms for cell in cells if (ms := _ms(cell.p99)) is not None), default=1.0)
    threshold_ms = None if threshold_s is None else threshold_s * 1e3
    colorscale, top = _colorscale(highest, threshold_ms)
    # every node once on the diagonal, without a value (a node never measures itself), so that
    # each takes its row and column even where nothing of it was measured: plotly.js grids the
    # columns by the values present, and a missing one would stretch its neighbours' cells
    none: list[Any] = [None] * len(names)
    trace: dict[str, Any] = {
        "x": names + [names[cell.column] for cell in cells],
        "y": names + [names[cell.row] for cell in cells],
        "z": none + [_ms(cell.p99) for cell in cells],
        "customdata": none
        + [[_ms(c.p50), None if c.loss is None else round(c.loss * 100, 3), c.samples] for c in cells],
        "hovertemplate": (
            "%{y} → %{x}<br>p99 %{z:.3f} ms<br>p50 %{customdata[0]:.3f} ms<br>"
            "loss %{customdata[1]} %<br>%{customdata[2]} samples<extra></extra>"
        ),
        "zmin": 0,
        "zmax": top,
        "colorscale": colorscale,
        "hoverongaps": False,
        "xgap": 1 if len(names) <= 60 else 0,
        "ygap": 1 if len(names) <= 60 else 0,
        "colorbar": {"title": {"text": "p99 ms"}},
        "name": "RTT p99",
    }
    figure = go.Figure(go.Heatmap(**trace))
    separator = _group_lines(matrix)
    side = min(1000, max(420, 18 * len(names) + 160))
    by_name = {"xaxis.categoryarray": names, "yaxis.categoryarray": names, "shapes": separator}
    slowest = list(matrix.worst_first)
    by_worst = {"xaxis.categoryarray": slowest, "yaxis.categoryarray": slowest, "shapes": []}
    figure.update_layout(
        height=side,
        margin={"l": 90, "r": 30, "t": 70, "b": 80},
        xaxis={
            "title": {"text": "peer"},
            "type": "category",
            "categoryorder": "array",
            "categoryarray": names,
            "constrain": "domain",
        },
        yaxis={
            "title": {"text": "measured by"},
            "type": "category",
            "categoryorder": "array",
            "categoryarray": names,
            "autorange": "reversed",
            "scaleanchor": "x",
            "constrain": "domain",
        },
        shapes=separator,
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "x": 0,
                "y": 1.1,
                "xanchor": "left",
                "yanchor": "bottom",
                "showactive": True,
                "buttons": [
                    {"label": "control planes first", "method": "relayout", "args": [by_name]},
                    {"label": "slowest first", "method": "relayout", "args": [by_worst]},
                ],
            }
        ],
    )
    return fragment(figure, div_id)


def _group_lines(matrix: RttMatrix) -> list[dict[str, Any]]:
    """A line between the control planes and the other nodes, on both axes."""
    edge = matrix.control_planes - 0.5
    if not 0 < matrix.control_planes < len(matrix.nodes):
        return []
    last = len(matrix.nodes) - 0.5
    style = {"type": "line", "line": {"color": "#222", "width": 2}, "xref": "x", "yref": "y"}
    return [
        {**style, "x0": edge, "x1": edge, "y0": -0.5, "y1": last},
        {**style, "x0": -0.5, "x1": last, "y0": edge, "y1": edge},
    ]


def cdf(cdfs: Sequence[Cdf], title: str, thresholds: Mapping[str, float], div_id: str) -> str:
    """CDF lines on a log latency axis; ``thresholds`` (label -> seconds) as vertical lines."""
    figure = go.Figure()
    for line in cdfs:
        figure.add_trace(
            go.Scatter(
                x=[round(v * 1e3, 6) for v in line.values],
                y=[round(s * 100, 4) for s in line.shares],
                mode="lines",
                line={"shape": "hv", "width": 1.6},
                name=f"{line.name} (n={line.count})",
                hovertemplate=f"{line.name}<br>%{{y:.2f}} % at or below %{{x:.3f}} ms<extra></extra>",
            )
        )
    for label, seconds in thresholds.items():
        # plotly.js 3 places a shape on a log axis by value, an annotation by log10(value)
        figure.add_shape(
            type="line",
            x0=seconds * 1e3,
            x1=seconds * 1e3,
            y0=0,
            y1=1,
            yref="paper",
            line={"color": _LIMIT, "dash": "dash", "width": 1.5},
        )
        figure.add_annotation(
            x=math.log10(seconds * 1e3),
            y=1,
            yref="paper",
            text=label,
            textangle=-90,
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"color": _LIMIT, "size": 11},
        )
    figure.update_layout(
        title={"text": title},
        height=420,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        xaxis={"title": {"text": "latency (ms, log scale)"}, "type": "log"},
        yaxis={"title": {"text": "% at or below"}, "range": [0, 100.5]},
        legend={"font": {"size": 11}},
    )
    return fragment(figure, div_id)


def over_time(series: Sequence[Series], phases: Mapping[str, tuple[float, float]], start: float, div_id: str) -> str:
    """CPU busy per node over the run (seconds from its start), probe phases shaded."""
    figure = go.Figure()
    for line in series:
        figure.add_trace(
            go.Scatter(
                x=[round(t - start, 3) for t in line.times],
                y=[round(v * 100, 2) for v in line.values],
                mode="lines",
                name=line.name,
                line={"width": 1.4},
                hovertemplate=f"{line.name}<br>%{{x:.1f}} s: %{{y:.1f}} % busy<extra></extra>",
            )
        )
    palette = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#9d755d")
    for i, (probe, (begin, end)) in enumerate(sorted(phases.items(), key=lambda p: p[1])):
        if probe == "node" or end <= begin:  # the node probe samples across the whole run
            continue
        figure.add_vrect(
            x0=begin - start,
            x1=end - start,
            fillcolor=palette[i % len(palette)],
            opacity=0.12,
            line={"width": 0},
            annotation_text=probe,
            annotation_position="top left",
        )
    figure.update_layout(
        height=380,
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        xaxis={"title": {"text": "seconds since the run started"}},
        yaxis={"title": {"text": "CPU busy %"}, "range": [0, 100.5]},
    )
    return fragment(figure, div_id)
