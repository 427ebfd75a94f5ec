"""The summary of one segmented field, built once as plain data (`FieldReport`, by `build_report`).

It holds what ``summary.json`` stores and the lines and tables ``report.md`` and ``report.html`` show;
the renderers (`fusionseg.sem.export.html`) only read it. Units: pixel size in µm, timings in s,
lengths and areas in µm (µm²) when the field is calibrated, else in pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.sem.export.qc import qc_lines
from fusionseg.sem.meta import sem_meta

Table = tuple[str, list[str], list[list[Any]]]
"""(title, header, rows) of one report table."""


@dataclass(frozen=True)
class FieldReport:
    """Everything written about one field: ``summary`` is the JSON object of ``summary.json`` (with ``files``:
    output name -> file, and ``modal``); ``facts`` the run details (input, method, calibration, versions,
    timings, notes), ``qc`` the QC figures and WARNING lines; ``tables`` the mineralogy tables; ``findings`` the
    headline lines of what was found (shown first, after the warnings)."""

    summary: dict[str, Any]
    facts: list[str]
    qc: list[str]
    tables: list[Table]
    findings: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """The QC lines that are warnings (shown in a box at the top)."""
        return [q for q in self.qc if q.startswith("WARNING")]

    @property
    def field(self) -> str:
        return str(self.summary["field"])

    @property
    def files(self) -> dict[str, str]:
        return self.summary["files"]


def build_report(
    result: Any,
    input_path: Path | str,
    labels: np.ndarray,
    uncertainty: np.ndarray,
    notes: list[str],
    stats: dict[str, Any],
    files: dict[str, str],
) -> FieldReport:
    """The `FieldReport` of a `SegmentResult`: ``labels`` (H, W) ids, ``uncertainty`` (H, W) 1 - confidence,
    ``notes`` to report, ``stats`` of `fusionseg.sem.export.mineralogy.mineralogy`, ``files`` written."""
    summary = field_summary(result, input_path, labels, uncertainty, notes)
    summary["mineralogy"] = stats
    qc = qc_lines(summary["qc"]) if summary.get("qc") else []
    data = {**summary, "files": dict(files), "modal": stats["modal"]}
    return FieldReport(data, report_facts(summary), qc, mineralogy_tables(summary), findings(summary))


def field_summary(result: Any, input_path: Any, labels: np.ndarray, uncertainty: np.ndarray, notes: list[str]) -> dict:
    """The summary's fields from the result: inputs, mode, points, timings, QC, calibration, training, notes."""
    s = result.sample
    summary: dict[str, Any] = {
        "field": s.meta.name or "field",
        "input": str(input_path),
        "mode": result.mode,
        "class_names": list(result.class_names),
        "points": s.num_points,
        "point_percent": 100.0 * s.num_points / labels.size,
        "timings": result.timings,
        "mean_uncertainty": float(np.nanmean(uncertainty)),
        "qc": result.qc,
        "energy_axis": None if sem_meta(s.meta).energy_axis is None else vars(sem_meta(s.meta).energy_axis),
        "beam_energy_kev": sem_meta(s.meta).beam_energy_kev,
        "training": {k: v for k, v in result.info.items() if k not in ("notes", "acquisition")},
        "notes": notes,
        "versions": versions(),
    }
    if "acquisition" in result.info:
        summary["acquisition"] = result.info["acquisition"]
    if result.point_labels is not None:
        summary["labelling"] = f"{result.point_labels.mode}: {json.dumps(result.point_labels.counts())}"
        if result.point_labels.clustering is not None:
            summary["clustering"] = result.point_labels.clustering
        if result.point_labels.phases:
            summary["phases_identified"] = result.point_labels.phases
    target = sem_meta(s.meta).original_target
    if target is not None:
        summary["ari_vs_target"] = adjusted_rand_index(labels, np.asarray(target))
    return summary


def versions() -> dict[str, str]:
    """Versions of fusionseg, PyTorch, NumPy and Python that made the map."""
    import platform

    import torch

    from fusionseg import __version__

    return {"fusionseg": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}  # fmt: skip


def findings(summary: dict[str, Any]) -> list[str]:
    """What was found, in a line or two: the phases by area (mass) %, and what is not sample."""
    m = summary.get("mineralogy") or {}
    phases = [r for r in m.get("modal", []) if r.get("area_percent") is not None and r["phase"] != "unclassified"]
    out = []
    if phases:
        main = ", ".join(f"{r['phase']} {r['area_percent']:.1f} %" + (f" ({r['mass_percent']:.1f} % by mass)"
                         if r.get("mass_percent") is not None else "") for r in phases[:6])  # fmt: skip
        more = f" and {len(phases) - 6} more" if len(phases) > 6 else ""
        out.append(f"{len(phases)} phase(s) by area of the sample: {main}{more}")
    void = m.get("not_sample") or {}
    if void.get("pixels"):
        kinds = ", ".join(f"{k} {v} px" for k, v in void["pixels"].items())
        out.append(f"not sample (pores, mount): {void['field_percent']:.2f} % of the field ({kinds}), outside the %")
    if m.get("particles"):
        out.append(f"grain mount: {len(m['particles'])} particles")
    return out


def report_facts(summary: dict[str, Any]) -> list[str]:
    """Run details in words, one line each: input, method, spectra, labelling, pixel size, calibration,
    versions, timings, uncertainty, notes."""
    px = (summary.get("mineralogy") or {}).get("pixel_size_um")
    labelling = summary.get("labelling")
    if labelling is None and ("weights" in summary["mode"] or "checkpoint" in summary["mode"]):
        labelling = "by the mineral library, in the model's classes"  # `checkpoint.adapt_to_checkpoint`
    elif labelling is None:
        labelling = "labels given with the input"
    else:
        how, _, counts = labelling.partition(": ")
        try:
            labelling = f"{how}: " + ", ".join(f"{k} {v}" for k, v in json.loads(counts).items())
        except ValueError:
            pass
    axis = summary.get("energy_axis")
    if axis:
        from fusionseg.sem.meta import EnergyAxis

        calibration = f"EDS calibration: {EnergyAxis(**axis).describe()}; beam {summary.get('beam_energy_kev')} kV"
    else:
        calibration = "EDS calibration: none (no raw spectra)"
    v = summary.get("versions") or {}
    facts = [f"input: {summary['input']}", f"method: {summary['mode']}",
             f"measured spectra: {summary['points']} ({summary['point_percent']:.2g} % of pixels)",
             f"point labelling: {labelling}",
             f"pixel size: {px:.4g} µm" if px else "pixel size: uncalibrated (lengths and areas in pixels)",
             calibration]  # fmt: skip
    if v:
        facts.append("software: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    facts += ["timings (s): " + ", ".join(f"{k} {v}" for k, v in summary["timings"].items()),
              f"mean uncertainty (1 - confidence): {summary['mean_uncertainty']:.3f}"]  # fmt: skip
    facts += [f"note: {note}" for note in summary.get("notes", [])]
    if "ari_vs_target" in summary:
        facts.append(f"agreement with the file's own phase map (adjusted Rand index): {summary['ari_vs_target']:.3f}")
    return facts


def mineralogy_tables(summary: dict[str, Any]) -> list[Table]:
    """(title, header, rows) of every table of the report, from ``summary['mineralogy']``."""
    m = summary.get("mineralogy") or {}
    unit = m.get("length_unit", "px")
    area_key = "area_um2" if unit == "um" else "area_px2"
    area_label = "area µm²" if unit == "um" else "area px²"
    length = "µm" if unit == "um" else "px"
    out = []
    if summary.get("phases_identified"):
        rows = [[name, p["formula"] or "-", ", ".join(f"{el} {v:.1f} ± {e:.1f}" for el, (v, e) in
                 p["composition_wt%"].items() if v >= 1), " ".join(p["lines"]), p["match_score"], p["runner_up"]]
                for name, p in summary["phases_identified"].items()]  # fmt: skip
        head = ["phase", "formula", "measured wt % (summed spectrum, standardless; O by stoichiometry)", "lines",
                "match score", "runner-up"]  # fmt: skip
        from fusionseg.sem.identification.match import MAX_SCORE

        title = f"Phases identified by composition (score: mean chi-square per element, ≤ {MAX_SCORE:g} fits)"
        out.append((title, head, rows))
    if m.get("modal"):
        rows = [[r["phase"], r["pixels"], r["area_percent"], r["mass_percent"], r["density_g_cm3"], r[area_key]]
                for r in m["modal"]]  # fmt: skip
        out.append(("Modal mineralogy", ["phase", "pixels", "area %", "mass %", "density g/cm³", area_label], rows))
    if m.get("grains"):
        rows = [[g["phase"], g["grains"], g.get("specks", 0), g[f"d10_{unit}"], g[f"d50_{unit}"], g[f"d90_{unit}"],
                 g[f"mean_{unit}"]] for g in m["grains"]]  # fmt: skip
        head = ["phase", "grains", "specks", f"D10 {length}", f"D50 {length}", f"D90 {length}", f"mean {length}"]
        smallest = f"{m.get('min_grain_px', 1)} px" + (
            f" = {m['min_grain_um2']:g} µm²" if m.get("min_grain_um2") else ""
        )
        out.append((f"Grains (8-connected, at least {smallest}; smaller specks counted apart; equivalent circle "
                    "diameter, by number)", head, rows))  # fmt: skip
    assoc = m.get("association") or {}
    if assoc.get("phases"):
        rows = [[p, *vals] for p, vals in zip(assoc["phases"], assoc["boundary_length"], strict=True)]
        out.append((f"Association: shared boundary length ({length})", ["", *assoc["phases"]], rows))
    if m.get("liberation"):
        rows = [[p, c["liberated"], c["binary"], c["complex"]] for p, c in m["liberation"].items()]
        title = "Particles by main phase and liberation class (liberated: main phase ≥ 90 %; binary: two ≥ 90 %)"
        out.append((title, ["main phase", "liberated", "binary", "complex"], rows))
    return out


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) of two labelings from their contingency table.

    Label-space free: compares a phase map with ground truth in another id space. Pixels with a
    negative label in either map are skipped. Hand-written because scikit-learn is not a dependency.
    """
    keep = (a >= 0) & (b >= 0)
    a, b = np.unique(a[keep], return_inverse=True)[1], np.unique(b[keep], return_inverse=True)[1]
    table = np.bincount(a * (b.max() + 1) + b, minlength=(a.max() + 1) * (b.max() + 1)).reshape(a.max() + 1, -1)
    pairs = lambda x: (x * (x - 1) / 2.0).sum()  # noqa: E731
    s_ij, s_a, s_b, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), pairs(np.array([a.size]))
    expected = s_a * s_b / max(total, 1.0)
    denom = 0.5 * (s_a + s_b) - expected
    return 1.0 if denom == 0 else float((s_ij - expected) / denom)
