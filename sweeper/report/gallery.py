"""The report page: one self-contained `index.html` (inline CSS and JS, relative links).

Summary of the run, the spec, the contact sheets, the A/B tables, then a card for
every manifest row, filterable by each varied parameter. Everything taken from
the manifest or the spec is HTML-escaped.
"""

from __future__ import annotations

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
.sheet{max-width:100%;border:1px solid #ddd;margin:8px 0}
.filters label{margin-right:16px} .cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;padding:8px;width:min-content;font-size:12px}
.card img{display:block} .card.failed{background:#fee}
.card table{margin:4px 0} .card td{padding:1px 4px;border:none}
.hole{width:THUMBpx;height:THUMBpx;background:#666;color:#eee;padding:6px;box-sizing:border-box}
"""

SCRIPT = """
function applyFilters(){
  const chosen={};
  document.querySelectorAll('select[data-param]').forEach(s=>{chosen[s.dataset.param]=s.value;});
  let shown=0;
  document.querySelectorAll('.card').forEach(card=>{
    const ok=Object.entries(chosen).every(([p,v])=>v==='*'||card.dataset['p_'+p]===v);
    card.style.display=ok?'':'none'; if(ok) shown++;
  });
  document.getElementById('shown-count').textContent=shown;
}
document.querySelectorAll('select[data-param]').forEach(s=>s.addEventListener('change',applyFilters));
applyFilters();
"""


def _text(value: Any) -> str:
    return "" if value is None or value != value else str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    head_row = f"<tr>{head}</tr>" if headers else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_text(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table>{head_row}{body}</table>"


def _filters(frame: pd.DataFrame, varied: list[str]) -> str:
    controls = []
    for column in varied:
        options = "".join(
            f'<option value="{escape(_text(v))}">{escape(_text(v))}</option>'
            for v in axis_values(frame, column)
        )
        controls.append(
            f'<label>{escape(column)} <select data-param="{column}">'
            f'<option value="*">all</option>{options}</select></label>'
        )
    return '<div class="filters">' + "".join(controls) + "</div>"


def _card(row: Any, varied: list[str], thumbs: dict[str, Path], report_dir: Path) -> str:
    data = " ".join(f'data-p_{c}="{escape(_text(row[c]))}"' for c in varied)
    params = "".join(
        f"<tr><td>{c}</td><td>{escape(_text(row[c]))}</td></tr>"
        for c in ("job_id", "output_index", *PARAMETER_NAMES)
    )
    file = _text(row["file"])
    if row["status"] == "succeeded" and file in thumbs:
        thumb = thumbs[file].relative_to(report_dir).as_posix()
        picture = (
            f'<a href="../{escape(file)}"><img src="{escape(thumb)}" alt="{escape(file)}"></a>'
        )
        css = "card"
    else:
        reason = escape(hole_label(row))
        picture, css = f'<div class="hole">{reason}</div>', f"card {row['status']}"
    return f'<div class="{css}" {data}>{picture}<table>{params}</table></div>'


def render_page(
    frame: pd.DataFrame,
    varied: list[str],
    sheets: list[Sheet],
    summary: pd.DataFrame,
    thumbs: dict[str, Path],
    report_dir: Path,
    run_facts: dict[str, Any],
    spec_text: str,
    thumb_size: int,
) -> str:
    counts = frame["status"].value_counts().to_dict()
    facts = [[k, v] for k, v in run_facts.items()] + [
        [f"images {status}", count] for status, count in sorted(counts.items())
    ]
    failures = frame[frame["status"] == "failed"]
    failure_rows = [[r.job_id, r.output_index, r.error] for r in failures.itertuples()]
    sheet_html = "".join(
        f'<h3>{escape(s.title)}</h3><img class="sheet" src="{s.file}" alt="{escape(s.title)}">'
        for s in sheets
    )
    cards = "".join(_card(row, varied, thumbs, report_dir) for _, row in frame.iterrows())
    summary_rows = summary.round(3).astype(object).values.tolist()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sweeper report</title>
<style>{STYLE.replace("THUMB", str(thumb_size))}</style></head><body>
<h1>Sweep report</h1>
{_table([], facts)}
<h2>Contact sheets</h2>{sheet_html}
<h2>A/B summary</h2>{_table(list(summary.columns), summary_rows)}
<h2>Failures ({len(failures)})</h2>
{_table(["job_id", "output", "error"], failure_rows) if failure_rows else "<p>none</p>"}
<h2>Gallery (<span id="shown-count">{len(frame)}</span> shown of {len(frame)})</h2>
{_filters(frame, varied)}
<div class="cards">{cards}</div>
<h2>Spec</h2><pre>{escape(spec_text)}</pre>
<script>{SCRIPT}</script>
</body></html>
"""
