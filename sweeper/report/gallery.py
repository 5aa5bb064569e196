"""The report page: one self-contained `index.html` (inline CSS and JS, relative links).

Facts about the run, the contact sheets, the plots (each measure by each axis,
with its confidence interval, and the pivot's heat-maps), the rankings from
people's votes, a compare view (two values of one axis side by side, matched
on every other parameter), the failures, a card for every image, filterable by
each axis, and the spec. Everything taken from the manifest, the scores or the
spec is HTML-escaped on the server and set as text in the browser.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.contract import PARAMETER_NAMES
from sweeper.report.axis_choice import axis_values
from sweeper.report.sheets import Sheet, hole_label

if TYPE_CHECKING:
    import pandas as pd

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1,h2{font-weight:600} pre{background:#f0f0f0;padding:12px;overflow:auto}
table{border-collapse:collapse;margin:8px 0 16px} td,th{border:1px solid #ccc;padding:4px 8px}
.sheet,.plot{max-width:100%;border:1px solid #ddd;margin:8px 0;background:#fff}
.plots{display:flex;flex-wrap:wrap;gap:8px}
.filters label,#compare label{margin-right:16px} .cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;padding:8px;width:min-content;font-size:12px}
.card img{display:block} .card.failed,.card.lost,.card.unanswered{background:#fee}
.card table{margin:4px 0} .card td{padding:1px 4px;border:none}
.hole{width:THUMBpx;height:THUMBpx;background:#666;color:#eee;padding:6px;box-sizing:border-box}
.pair{display:flex;gap:16px;margin:12px 0;align-items:flex-start}
.pair figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px;font-size:12px}
.pair figcaption{white-space:pre-line}
"""

SCRIPT = """
function applyFilters(){
  const chosen={};
  document.querySelectorAll('select[data-param]').forEach(s=>{chosen[s.dataset.param]=s.value;});
  let shown=0;
  document.querySelectorAll('.card').forEach(card=>{
    const ok=Object.entries(chosen).every(([p,v])=>v==='*'||card.dataset['p'+p]===v);
    card.style.display=ok?'':'none'; if(ok) shown++;
  });
  document.getElementById('shown-count').textContent=shown;
}
document.querySelectorAll('select[data-param]').forEach(s=>s.addEventListener('change',applyFilters));
applyFilters();

const study=JSON.parse(document.getElementById('study-data').textContent);
const axisPick=document.getElementById('compare-axis');
const aPick=document.getElementById('compare-a'), bPick=document.getElementById('compare-b');
function options(select, values){
  select.replaceChildren(...values.map(v=>{const o=document.createElement('option');
    o.value=v; o.textContent=v; return o;}));
}
function pickAxis(){
  const values=study.axes[axisPick.value]||[];
  options(aPick, values); options(bPick, values);
  if(values.length>1) bPick.value=values[1];
  compare();
}
function figure(image, value){
  const box=document.createElement('figure');
  const img=document.createElement('img'); img.src=image.thumb; img.alt=image.file;
  const caption=document.createElement('figcaption');
  caption.textContent=value+'\\n'+Object.entries(image.measures)
    .map(([m,v])=>m+': '+(v===null?'-':Number(v).toPrecision(4))).join('\\n');
  box.append(img, caption); return box;
}
function compare(){
  const axis=axisPick.value, a=aPick.value, b=bPick.value;
  const out=document.getElementById('compare-pairs');
  const key=im=>JSON.stringify(Object.entries(im.params).filter(([k])=>k!==axis));
  const others=new Map();
  study.images.filter(im=>im.params[axis]===b).forEach(im=>others.set(key(im), im));
  const rows=study.images.filter(im=>im.params[axis]===a && others.has(key(im)))
    .map(im=>{const row=document.createElement('div'); row.className='pair';
      row.append(figure(im, axis+' = '+a), figure(others.get(key(im)), axis+' = '+b));
      return row;});
  out.replaceChildren(...rows);
  document.getElementById('compare-count').textContent=rows.length;
}
[axisPick,aPick,bPick].forEach(s=>s.addEventListener('change', s===axisPick?pickAxis:compare));
if(axisPick.options.length) pickAxis();
"""


@dataclass(frozen=True)
class PageParts:
    """Everything the page shows, made by the report before the page is written."""

    frame: pd.DataFrame
    axes: list[str]
    measures: list[str]
    sheets: list[Sheet]
    summary: pd.DataFrame
    thumbs: dict[str, Path]
    report_dir: Path
    run_dir: Path
    facts: dict[str, Any]
    spec_text: str
    thumb_size: int
    plots: list[Path] = field(default_factory=list)
    ranking: pd.DataFrame | None = None
    ranking_plots: list[Path] = field(default_factory=list)


def _text(value: Any) -> str:
    return "" if value is None or value != value else str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    head_row = f"<tr>{head}</tr>" if headers else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_text(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table>{head_row}{body}</table>"


def _link(path: Path, report_dir: Path) -> str:
    """`path` as the page links to it: relative to the report, wherever the report is."""
    return Path(os.path.relpath(path, report_dir)).as_posix()


def _filters(frame: pd.DataFrame, axes: list[str]) -> str:
    controls = []
    for position, column in enumerate(axes):
        options = "".join(
            f'<option value="{escape(_text(v))}">{escape(_text(v))}</option>'
            for v in axis_values(frame, column)
        )
        controls.append(
            f'<label>{escape(column)} <select data-param="{position}" '
            f'data-axis="{escape(column)}">'
            f'<option value="*">all</option>{options}</select></label>'
        )
    return '<div class="filters">' + "".join(controls) + "</div>"


def _card(row: Any, parts: PageParts) -> str:
    data = " ".join(
        f'data-p{position}="{escape(_text(row[c]))}"' for position, c in enumerate(parts.axes)
    )
    params = "".join(
        f"<tr><td>{c}</td><td>{escape(_text(row[c]))}</td></tr>"
        for c in ("job_id", "output_index", *PARAMETER_NAMES)
    )
    file = _text(row["file"])
    if row["status"] == "succeeded" and file in parts.thumbs:
        thumb = _link(parts.thumbs[file], parts.report_dir)
        image = _link(parts.run_dir / file, parts.report_dir)
        picture = f'<a href="{escape(image)}"><img src="{escape(thumb)}" alt="{escape(file)}"></a>'
        css = "card"
    else:
        reason = escape(hole_label(row))
        picture, css = f'<div class="hole">{reason}</div>', f"card {row['status']}"
    return f'<div class="{css}" {data}>{picture}<table>{params}</table></div>'


def _study_data(parts: PageParts) -> str:
    """The compare view's data: each shown image, its axis values and its measures."""
    images = []
    done = parts.frame[parts.frame["status"] == "succeeded"]
    for row in done.to_dict("records"):
        file = _text(row["file"])
        if file not in parts.thumbs:
            continue
        images.append(
            {
                "file": file,
                "thumb": _link(parts.thumbs[file], parts.report_dir),
                "params": {axis: _text(row[axis]) for axis in parts.axes},
                "measures": {m: _number(row.get(m)) for m in parts.measures},
            }
        )
    axes = {axis: [_text(v) for v in axis_values(parts.frame, axis)] for axis in parts.axes}
    text = json.dumps({"axes": axes, "images": images}, ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c")  # never a closing tag inside the script element


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number or number in (float("inf"), float("-inf")) else number


def _images(paths: list[Path], report_dir: Path, css: str) -> str:
    return "".join(
        f'<img class="{css}" src="{escape(_link(p, report_dir))}" alt="{escape(p.stem)}">'
        for p in paths
    )


def _ranking_section(parts: PageParts) -> str:
    if parts.ranking is None or parts.ranking.empty:
        return (
            "<p>No pairwise votes yet: <code>sweeper review DIR</code> opens a blind review "
            "in your browser.</p>"
        )
    shown = parts.ranking.round(3).astype(object).values.tolist()
    return (
        _images(parts.ranking_plots, parts.report_dir, "plot")
        + _table(list(parts.ranking.columns), shown)
        + '<p><a href="ranking.csv">ranking.csv</a></p>'
    )


def _compare_section(parts: PageParts) -> str:
    axes = "".join(f'<option value="{escape(a)}">{escape(a)}</option>' for a in parts.axes)
    return (
        '<div id="compare">'
        f'<label>axis <select id="compare-axis">{axes}</select></label>'
        '<label>A <select id="compare-a"></select></label>'
        '<label>B <select id="compare-b"></select></label>'
        '<span><span id="compare-count">0</span> matched pairs</span>'
        '<div id="compare-pairs"></div></div>'
    )


def render_page(parts: PageParts) -> str:
    frame = parts.frame
    counts = frame["status"].value_counts().to_dict()
    facts = [[k, v] for k, v in parts.facts.items()] + [
        [f"images {status}", count] for status, count in sorted(counts.items())
    ]
    failures = frame[frame["status"].isin(["failed", "lost", "unanswered"])]
    failure_rows = [[r.job_id, r.output_index, r.status, r.error] for r in failures.itertuples()]
    sheet_html = "".join(
        f'<h3>{escape(s.title)}</h3><img class="sheet" src="{s.file}" alt="{escape(s.title)}">'
        for s in parts.sheets
    )
    cards = "".join(_card(row, parts) for _, row in frame.iterrows())
    summary_rows = parts.summary.round(3).astype(object).values.tolist()
    style = STYLE.replace("THUMB", str(parts.thumb_size))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sweeper report</title>
<style>{style}</style></head><body>
<h1>Sweep report</h1>
{_table([], facts)}
<h2>Contact sheets</h2>{sheet_html}
<h2>Which value is better?</h2>
<p>Each measure by each axis: the mean over every other axis, with a bootstrap 95 %
interval (<a href="summary.csv">summary.csv</a>, <a href="pivot.csv">pivot.csv</a>).</p>
<div class="plots">{_images(parts.plots, parts.report_dir, "plot")}</div>
<details><summary>The numbers</summary>
{_table(list(parts.summary.columns), summary_rows)}</details>
<h2>Rankings from votes</h2>{_ranking_section(parts)}
<h2>Compare</h2>{_compare_section(parts)}
<h2>Failures ({len(failures)})</h2>
{_table(["job_id", "output", "status", "error"], failure_rows) if failure_rows else "<p>none</p>"}
<h2>Gallery (<span id="shown-count">{len(frame)}</span> shown of {len(frame)})</h2>
{_filters(frame, parts.axes)}
<div class="cards">{cards}</div>
<h2>Spec</h2><pre>{escape(parts.spec_text)}</pre>
<script id="study-data" type="application/json">{_study_data(parts)}</script>
<script>{SCRIPT}</script>
</body></html>
"""
