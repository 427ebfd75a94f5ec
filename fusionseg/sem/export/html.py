"""The report of a segmented field as tables: Markdown (``report.md``) and a standalone HTML page (``report.html``).

Both render the same content from the JSON summary: inputs, QC figures and warnings, the pictures,
modal mineralogy (area % and mass %), grain statistics, the association matrix and, for grain
mounts, the liberation classes. The HTML page links the PNGs beside it (no external resources).
"""

from __future__ import annotations

import html
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, header, rows) of every table of the report, from ``summary['mineralogy']``."""
    m = summary.get("mineralogy") or {}
    unit = m.get("length_unit", "px")
    area_key = "area_um2" if unit == "um" else "area_px2"
    area_label = "area µm²" if unit == "um" else "area px²"
    length = "µm" if unit == "um" else "px"
    out = []
    if m.get("modal"):
        rows = [[r["phase"], r["pixels"], r["area_percent"], r["mass_percent"], r["density_g_cm3"], r[area_key]]
                for r in m["modal"]]  # fmt: skip
        out.append(("Modal mineralogy", ["phase", "pixels", "area %", "mass %", "density g/cm³", area_label], rows))
    if m.get("grains"):
        rows = [[g["phase"], g["grains"], g[f"d10_{unit}"], g[f"d50_{unit}"], g[f"d90_{unit}"], g[f"mean_{unit}"]]
                for g in m["grains"]]  # fmt: skip
        head = ["phase", "grains", f"D10 {length}", f"D50 {length}", f"D90 {length}", f"mean {length}"]
        out.append(("Grains (8-connected; equivalent circle diameter, by number)", head, rows))
    assoc = m.get("association") or {}
    if assoc.get("phases"):
        rows = [[p, *vals] for p, vals in zip(assoc["phases"], assoc["boundary_length"], strict=True)]
        out.append((f"Association: shared boundary length ({length})", ["", *assoc["phases"]], rows))
    if m.get("liberation"):
        rows = [[p, c["liberated"], c["binary"], c["complex"]] for p, c in m["liberation"].items()]
        title = "Particles by main phase and liberation class (liberated: main phase ≥ 90 %; binary: two ≥ 90 %)"
        out.append((title, ["main phase", "liberated", "binary", "complex"], rows))
    return out


def markdown_tables(summary: dict[str, Any]) -> list[str]:
    """Markdown lines of `tables`."""
    lines: list[str] = []
    for title, head, rows in tables(summary):
        lines += ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def html_report(summary: dict[str, Any], files: dict[str, str], facts: list[str], qc: list[str]) -> str:
    """A standalone HTML page: ``facts`` (input, mode, ...), ``qc`` lines, pictures, every table."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Phase map of {e(str(summary['field']))}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto}table{border-collapse:collapse;"
        "margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}td:first-child,th:first-child"
        "{text-align:left}.warn{color:#a00;font-weight:bold}img{max-width:100%}</style></head><body>",
        f"<h1>Phase map of <code>{e(str(summary['field']))}</code></h1><ul>",
        *[f"<li>{e(f)}</li>" for f in facts],
        "</ul><h2>Quality control</h2><ul>",
        *[f"<li class='{'warn' if q.startswith('WARNING') else ''}'>{e(q)}</li>" for q in qc],
        "</ul>",
    ]
    for key in ("overlay", "uncertainty_png"):
        if key in files:
            parts.append(f"<p><img src='{e(files[key])}' alt='{e(key)}'></p>")
    for title, head, rows in tables(summary):
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("<h2>Files</h2><ul>" + "".join(f"<li><a href='{e(v)}'>{e(v)}</a></li>" for v in files.values()))
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
