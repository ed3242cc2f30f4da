"""The run report: one self-contained HTML page (figures embedded, no external assets).

It shows what a reviewer checks first: the network and what was left out of it and why,
the quality statistics, the maps, sample time series, and the exact configuration.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; font-size: .92em; }
th { background: #f3f3f3; } img { max-width: 100%; } pre { background: #f7f7f7; padding: 1em;
overflow-x: auto; font-size: .85em; } .note { color: #555; font-size: .92em; }
"""


def render_report(summary: dict[str, Any], figures: dict[str, Path], config_json: str) -> str:
    """The HTML text of the report.

    summary: the run's summary.json content; optional keys `pairs_dropped` (list of
    {"pair", "reason"}) and `closure` (dict of statistics) add their sections.
    figures: name -> PNG file among velocity, quality, network, coherence_matrix, timeseries.
    """
    ref = summary["reference"]
    vel = summary["velocity_mm_per_yr"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>mtinsar report</title><style>{_STYLE}</style></head><body>",
        "<h1>mtinsar run report</h1>",
        f"<p class='note'>{_e(summary['software'])}; {summary['n_pairs']} pairs, "
        f"{summary['n_dates']} dates ({_e(summary['first_date'])} .. "
        f"{_e(summary['last_date'])}). Displacement is line-of-sight, positive towards the "
        "satellite, relative to the reference point and the first date.</p>",
        "<h2>Summary</h2>",
        _table(
            [
                ("pixels", summary["n_pixels"]),
                ("reliable (mask)", summary["n_pixels_reliable"]),
                ("estimated", summary["n_pixels_estimated"]),
                ("disconnected network (masked)", summary["n_pixels_disconnected"]),
                ("without data", summary["n_pixels_no_data"]),
                (
                    "reference",
                    f"{ref['method']}: lon {ref['lon']:.5f}, lat {ref['lat']:.5f} "
                    f"(row {ref['y']}, col {ref['x']}), date {ref['date']}",
                ),
                ("velocity 1st / 50th / 99th percentile [mm/yr]", _percentiles(vel)),
                *[(f"time: {k} [s]", v) for k, v in summary.get("timings_s", {}).items()],
            ]
        ),
        "<h2>Network</h2>",
        _figure(figures, "network", "Pairs between acquisition dates, at their baselines."),
        _figure(figures, "coherence_matrix", "Mean coherence of each pair."),
        _dropped(summary.get("pairs_dropped")),
        _closure(summary.get("closure")),
        "<h2>Maps</h2>",
        _figure(figures, "velocity", "LOS velocity over reliable pixels; ▲ reference."),
        _figure(figures, "quality", "Formal velocity std, temporal coherence, mask."),
        "<h2>Time series</h2>",
        _figure(figures, "timeseries", "Displacement at sample points with the model fit."),
        "<h2>Configuration</h2>",
        f"<pre>{_e(json.dumps(json.loads(config_json), indent=2))}</pre>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] | None = None) -> str:
    head = f"<tr><th>{_e(header[0])}</th><th>{_e(header[1])}</th></tr>" if header else ""
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{head}{body}</table>"


def _percentiles(vel: dict[str, float | None]) -> str:
    if vel.get("median") is None:
        return "no reliable pixel"
    return f"{vel['p01']:.1f} / {vel['median']:.1f} / {vel['p99']:.1f}"


def _figure(figures: dict[str, Path], name: str, caption: str) -> str:
    path = figures.get(name)
    if path is None:
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{_e(name)}' src='data:image/png;base64,{data}'>"
        f"<figcaption class='note'>{_e(caption)}</figcaption></figure>"
    )


def _dropped(dropped: list[dict[str, str]] | None) -> str:
    if dropped is None:
        return ""
    if not dropped:
        return "<p>No pair was dropped.</p>"
    rows = [(d["pair"], d["reason"]) for d in dropped]
    return f"<h3>Dropped pairs ({len(rows)})</h3>" + _table(rows, ("pair", "reason"))


def _closure(closure: dict[str, Any] | None) -> str:
    if not closure:
        return ""
    return "<h3>Loop closure</h3>" + _table(list(closure.items()), ("statistic", "value"))
