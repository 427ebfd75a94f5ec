"""Everything ``fusionseg segment`` writes for one field, and a short Markdown report.

Files (``<name>`` = the field's name):

- ``<name>_phases.tif``: uint16 label ids, JSON class table in the TIFF description (`write_phase_tiff`);
- ``<name>_uncertainty.tif`` / ``.png``: 1 - confidence per pixel (float32 0..1);
- ``<name>_overlay.png``: BSE, phase map with the measured points, legend;
- ``<name>_modal.csv``: area % and pixel counts per phase;
- ``<name>_phases.hspy``: HyperSpy phase map on the input's axes (needs h5py; skipped with a note otherwise);
- ``points.csv``: measured points (row, col) and their labels;
- ``summary.json``, ``report.md``, ``report.html``: one `FieldReport` (`fusionseg.sem.export.summary`), built once
  and rendered (`fusionseg.sem.export.html`).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionseg.export.writers import (
    atomic_path,
    hspy_available,
    modal_table,
    write_acquisition_csv,
    write_acquisition_png,
    write_hspy_phase_map,
    write_json,
    write_modal_csv,
    write_overlay_png,
    write_phase_tiff,
    write_uncertainty_png,
    write_uncertainty_tiff,
)
from fusionseg.models.metrics import field_metrics
from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.export.summary import adjusted_rand_index, build_report, report_facts
from fusionseg.sem.meta import sem_meta

log = logging.getLogger(__name__)


def measured_phases_bound(sample: Sample) -> dict:
    """mIoU ceiling of a method that names phases from the field's point labels, and the phases none hit."""
    from fusionseg.baselines import measured_phases_ceiling

    truth, found = sample.target.numpy(), sample.point_target.numpy()
    ceiling = measured_phases_ceiling(truth, found)
    missed = sorted(set(np.unique(truth[truth != IGNORE_INDEX]).tolist()) - set(found.tolist()))
    return {
        "miou_ceiling_measured_phases": field_metrics(torch.from_numpy(ceiling), sample.target, sample.num_classes)[
            "miou"
        ],
        "phases_without_a_point": [sample.meta.class_names[k] for k in missed],
    }


def write_field_outputs(
    out: Path,
    sample: Sample,
    labels: torch.Tensor,
    confidence: torch.Tensor,
    pixel_size_um: float | None = None,
    **overlay: Any,
) -> dict:
    """Phase map TIFF, overlay PNG, modal CSV (and metrics when the sample has a target).

    ``pixel_size_um``: calibration (scale bar, TIFF resolution; None = uncalibrated); ``overlay``:
    `phase_map_figure`'s ``point_labels`` and ``disagree``. The legend shows each phase's area %.
    """
    names = list(sample.meta.class_names)
    stem = sample.meta.name or "field"
    lab = labels.numpy().astype(np.int64, copy=False)  # a view of int64 labels (537 MB at 8192²)
    write_phase_tiff(out / f"{stem}_phases.tif", lab, names, pixel_size_um)
    rows = modal_table(lab, names, pixel_size_um or 1.0)
    write_overlay_png(
        out / f"{stem}_overlay.png",
        sample.image[0].numpy(),
        lab,
        names,
        points=sample.point_coords.numpy(),
        truth=None if sample.target is None else sample.target.numpy(),
        title=f"{stem}: {sample.num_points} spectra ({100 * sample.num_points / lab.size:.3g} % of pixels)",
        area_percent={r["phase"]: r["area_percent"] for r in rows},
        pixel_size_um=pixel_size_um,
        **overlay,
    )
    write_modal_csv(out / f"{stem}_modal.csv", rows)
    result = {"mean_confidence": float(np.nanmean(confidence.numpy()))}
    if sample.target is not None:
        result.update(field_metrics(labels, sample.target, len(names)))
    if sample.target is not None and sample.point_target is not None:
        result.update(measured_phases_bound(sample))
    return result


def _write_points_csv(
    path: Path, coords: np.ndarray, labels: np.ndarray | None, names: tuple[str, ...], matches: dict | None = None
) -> None:
    """``row,col,label`` per measured point, and its two best library matches with their scores when identified by
    composition (`fusionseg.sem.segment.naming.point_matches`)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    extra = list(matches) if matches and len(next(iter(matches.values()))) == len(coords) else []
    w.writerow(["row", "col", "label", *extra])
    lab = [names[k] if k != IGNORE_INDEX else "unknown" for k in labels.tolist()] if labels is not None else None
    w.writerows([[f"{r:.2f}", f"{c:.2f}", lab[i] if lab else "", *(matches[k][i] for k in extra)]
                 for i, (r, c) in enumerate(coords.tolist())])  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def write_rows_csv(path: Path, rows: list[dict]) -> Path:
    """Rows of dicts as CSV (columns of the first row; empty cells for None), atomically."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{k: "" if v is None else v for k, v in r.items()} for r in rows])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def write_mineralogy(out: Path, stem: str, stats: dict[str, Any], files: dict[str, str]) -> None:
    """Modal, grain, association (and particle) CSVs of `fusionseg.sem.export.mineralogy.mineralogy`."""
    files["modal_csv"] = f"{stem}_modal.csv"
    write_rows_csv(out / files["modal_csv"], stats["modal"])
    files["grains_csv"] = f"{stem}_grains.csv"
    write_rows_csv(out / files["grains_csv"], stats["grains"])
    assoc = stats["association"]
    files["association_csv"] = f"{stem}_association.csv"
    rows = [{"phase": p, **dict(zip(assoc["phases"], vals, strict=True))}
            for p, vals in zip(assoc["phases"], assoc["boundary_length"], strict=True)]  # fmt: skip
    write_rows_csv(out / files["association_csv"], rows)
    if "particles" in stats:
        files["particles_csv"] = f"{stem}_particles.csv"
        write_rows_csv(out / files["particles_csv"], stats["particles"])


def write_segment_outputs(out: Path, result: Any, input_path: Path | str = "") -> dict[str, str]:
    """Write every output of a `SegmentResult` into ``out`` (a staging folder); returns name -> file."""
    from fusionseg.sem.export.html import render_html, render_markdown
    from fusionseg.sem.export.mineralogy import mineralogy, pixel_size_um
    from fusionseg.sem.export.qc import UNKNOWN_NAMES

    sample, names = result.sample, tuple(result.class_names)
    stem = sample.meta.name or "field"
    labels = result.labels.numpy().astype(np.int64, copy=False)  # read only: a view, not a copy
    px_um = pixel_size_um(sample.meta)
    stats = mineralogy(labels, names, px_um, result.info.get("min_grain"))
    point_labels = None if sample.point_target is None else sample.point_target.numpy().copy()
    if point_labels is not None:  # the per-field model's "unknown" class is shown as unclassified (white)
        point_labels[np.isin(point_labels, [k for k, n in enumerate(names) if n in UNKNOWN_NAMES])] = IGNORE_INDEX
    disagree = np.zeros(sample.num_points, dtype=bool)
    disagree[(result.qc.get("agreement_model") or {}).get("disagreeing_points", [])] = True
    shown = replace(sample, target=None, point_target=None, meta=replace(sample.meta, class_names=names, name=stem))
    write_field_outputs(out, shown, result.labels, result.confidence, px_um, point_labels=point_labels,
                        disagree=disagree)  # fmt: skip
    uncertainty = (1.0 - result.confidence).numpy()
    files = {"phases_tiff": f"{stem}_phases.tif", "overlay": f"{stem}_overlay.png", "modal_csv": f"{stem}_modal.csv",
             "uncertainty_tiff": f"{stem}_uncertainty.tif", "uncertainty_png": f"{stem}_uncertainty.png",
             "points_csv": "points.csv", "summary": "summary.json", "report": "report.md"}  # fmt: skip
    write_uncertainty_tiff(out / files["uncertainty_tiff"], uncertainty, px_um)
    coords = sample.point_coords.numpy()
    write_uncertainty_png(out / files["uncertainty_png"], uncertainty, coords)
    matches = result.point_labels.matches if result.point_labels is not None else None
    _write_points_csv(out / files["points_csv"], coords, sample.point_target, names, matches)
    if result.acquisition_order is not None:  # `fusionseg segment --acquire`: where and when each point was measured
        files.update(acquisition_csv="acquisition.csv", acquisition_png="acquisition.png")
        write_acquisition_csv(out / files["acquisition_csv"], result.acquisition_order)
        write_acquisition_png(out / files["acquisition_png"], sample.image[0].numpy(), result.acquisition_order)
    notes = list(result.info.get("notes", []))
    if hspy_available():
        _write_hspy_files(out, stem, result, labels, uncertainty, files)
    else:
        notes.append("no .hspy files: RosettaSciIO's hspy writer needs h5py (pip install h5py)")
        log.warning(notes[-1])
    write_mineralogy(out, stem, stats, files)
    files["report_html"] = "report.html"
    report = build_report(result, input_path, labels, uncertainty, notes, stats, files)  # once, then rendered
    write_json(out / files["summary"], report.summary)
    with atomic_path(out / files["report"]) as tmp:
        tmp.write_text(render_markdown(report))
    with atomic_path(out / files["report_html"]) as tmp:
        tmp.write_text(render_html(report))
    return files


def _write_hspy_files(
    out: Path, stem: str, result: Any, labels: np.ndarray, uncertainty: np.ndarray, files: dict[str, str]
) -> None:
    """Phase map + uncertainty (``<stem>_phases.hspy``), and each phase's mean spectrum (``<stem>_spectra.hspy``)."""
    from fusionseg.sem.export.spectra import write_mean_spectra_hspy

    s, names = result.sample, tuple(result.class_names)
    files["hspy"] = f"{stem}_phases.hspy"
    write_hspy_phase_map(out / files["hspy"], labels, names, sem_meta(s.meta).nav_axes or None, f"{stem} phases",
                         uncertainty, sem_meta(s.meta).original_metadata)  # fmt: skip
    if (
        sem_meta(s.meta).energy_axis is not None
        and s.point_target is not None
        and (s.point_target != IGNORE_INDEX).any()
    ):
        files["spectra_hspy"] = f"{stem}_spectra.hspy"
        sem = sem_meta(s.meta)
        write_mean_spectra_hspy(out / files["spectra_hspy"], s.point_features.numpy(), s.point_target.numpy(), names,
                                sem.energy_axis, sem.beam_energy_kev, f"{stem} mean spectra")  # fmt: skip


__all__ = [
    "adjusted_rand_index",
    "measured_phases_bound",
    "report_facts",
    "write_field_outputs",
    "write_mineralogy",
    "write_rows_csv",
    "write_segment_outputs",
]
