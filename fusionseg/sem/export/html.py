"""Renderers of a `FieldReport` (`fusionseg.sem.export.summary`): Markdown (``report.md``) and a standalone HTML
page (``report.html``). They only read the report, built once, and put what a geologist reads first first: the
warnings in a box, what was found (phases by name, area and mass %, compositions, grains, association,
liberation), the pictures, the QC figures, and the run details (input, calibration, versions, timings) last.
The HTML page links the PNGs beside it (no external resources).
"""

from __future__ import annotations

import html
from typing import Any

from fusionseg.sem.export.summary import FieldReport, Table


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown_tables(tables: list[Table]) -> list[str]:
    """Markdown lines of the report's tables."""
    lines: list[str] = []
    for title, head, rows in tables:
        lines += ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(report: FieldReport) -> str:
    """``report.md``: warnings (a quoted box), what was found and its tables, pictures, QC, run details."""
    files = report.files
    lines = [f"# Phase map of `{report.field}`"]
    if report.warnings:
        lines += ["", "> **Warnings: read before using this map**", ">"] + [f"> - {w}" for w in report.warnings]
    lines += ["", "## What was found", ""] + [f"- {f}" for f in report.findings]
    lines += markdown_tables(report.tables)
    lines += ["", f"![overlay]({files['overlay']})", "", f"![uncertainty]({files['uncertainty_png']})"]
    checks = [q for q in report.qc if q not in report.warnings]
    if checks:
        lines += ["", "## Quality control", ""] + [f"- {line}" for line in checks]
    lines += ["", "## Run details", ""] + [f"- {f}" for f in report.facts]
    return "\n".join(lines) + "\n"


def render_html(report: FieldReport) -> str:
    """``report.html``: a standalone page: warnings box, findings and tables, pictures, QC, run details, files."""
    e = html.escape
    files = report.files
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Phase map of {e(report.field)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto}table{border-collapse:collapse;"
        "margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}td:first-child,th:first-child"
        "{text-align:left}.warn{color:#a00;font-weight:bold}.box{border:2px solid #a00;background:#fff4f4;"
        "padding:.2em 1em;margin:1em 0}img{max-width:100%}</style></head><body>",
        f"<h1>Phase map of <code>{e(report.field)}</code></h1>",
    ]
    if report.warnings:
        parts += ["<div class='box'><h2>Warnings: read before using this map</h2><ul>",
                  *[f"<li class='warn'>{e(w)}</li>" for w in report.warnings], "</ul></div>"]  # fmt: skip
    parts += ["<h2>What was found</h2><ul>", *[f"<li>{e(f)}</li>" for f in report.findings], "</ul>"]
    for title, head, rows in report.tables:
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows]
        parts.append("</table>")
    for key in ("overlay", "uncertainty_png"):
        if key in files:
            parts.append(f"<p><img src='{e(files[key])}' alt='{e(key)}'></p>")
    checks = [q for q in report.qc if q not in report.warnings]
    parts += ["<h2>Quality control</h2><ul>", *[f"<li>{e(q)}</li>" for q in checks], "</ul>"]
    parts += ["<h2>Run details</h2><ul>", *[f"<li>{e(f)}</li>" for f in report.facts], "</ul>"]
    parts.append("<h2>Files</h2><ul>" + "".join(f"<li><a href='{e(v)}'>{e(v)}</a></li>" for v in files.values()))
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
