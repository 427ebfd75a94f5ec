"""`segment`'s held-out check and finish: the map scored blind on withheld points, then the classic floor
(`fusionseg.sem.segment.floor`), the area outside the EDS acquisition, the honoured points and the QC figures."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from fusionseg.inference import central_box, central_window, predict_field
from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.meta import sem_meta
from fusionseg.sem.segment.config import SegmentConfig, SegmentResult
from fusionseg.sem.segment.floor import classic_floor
from fusionseg.sem.segment.timing import timed

log = logging.getLogger(__name__)


def withheld_points(sample: Sample, share: float, seed: int) -> Tensor:
    """(N,) bool: ``share`` of the labelled points drawn at random (seeded) for the held-out check; none under 10."""
    labelled = torch.nonzero(sample.point_target != IGNORE_INDEX).squeeze(1) if sample.point_target is not None else []
    out = torch.zeros(sample.num_points, dtype=torch.bool)
    n = int(round(share * len(labelled)))
    if len(labelled) >= 10 and n >= 1:
        g = torch.Generator().manual_seed(seed + 11)
        out[labelled[torch.randperm(len(labelled), generator=g)[:n]]] = True
    return out


def finish_result(
    result: SegmentResult, model: Any, config: SegmentConfig, withheld: Tensor, how: str,
    predicted: Sample | None = None,
) -> SegmentResult:  # fmt: skip
    """Coverage, the held-out check, honouring the measured points and the QC figures (`fusionseg.sem.export.qc`).

    ``model``: a `FusionSegModule`, or a callable ``Sample -> (H, W) labels`` (a classic method). ``predicted``:
    the field as the model reads it (`FusionSegModule.points_encoded`), when not ``result.sample`` itself.
    """
    from fusionseg.sem.export.qc import held_out_agreement, honour_points, point_calls, quality_checks
    from fusionseg.sem.identify import void_points

    s, names = result.sample, tuple(result.class_names)
    labels, conf = result.labels.numpy(), result.confidence.numpy()  # edited in place: `result` gets new maps below
    calls = point_calls(s.point_coords.numpy(), None if s.point_target is None else s.point_target.numpy(), names,
                        labels.shape, void_points(s.point_features).numpy())  # fmt: skip
    held = {"how": how, "share": None}
    if withheld.any():
        keep, read = ~withheld, s if predicted is None else predicted
        rest = replace(read, point_coords=read.point_coords[keep], point_features=read.point_features[keep],
                       point_target=None if read.point_target is None else read.point_target[keep])  # fmt: skip
        blind_fills: dict[str, Tensor] = {}
        with timed(result.timings, "qc_predict_s"):
            if isinstance(model, L.LightningModule):
                blind, withheld, how = blind_window_map(model, rest, s.point_coords, withheld, config, how, blind_fills)
            else:
                blind = model(rest)
            held = held_out_agreement(blind.numpy(), names, calls.subset(withheld.numpy()), how)
        if config.classic_floor and isinstance(model, L.LightningModule):
            with timed(result.timings, "classic_floor_s"):
                floored = classic_floor(result, blind, rest, calls.subset(withheld.numpy()), held, config, blind_fills)
            if floored is not None:
                labels, conf, held = floored
    measured = sem_meta(s.meta).measured_mask
    outside = None if measured is None or config.extrapolate else ~np.asarray(measured, dtype=bool)
    if outside is not None and outside.any():
        labels[outside], conf[outside] = IGNORE_INDEX, np.nan
        result.info.setdefault("notes", []).append(
            f"{int(outside.sum())} pixels ({100 * outside.mean():.1f} %) lie outside the EDS-acquired area: "
            "'not measured' (--extrapolate maps them)"
        )
    if config.voids:  # before honouring: a confidently identified measured pixel keeps its mineral
        names = mark_not_sample(result, labels, conf)
    final = honour_points(labels, names, calls) if config.honour_points else labels
    result.qc = quality_checks(final, names, calls, model_labels=labels, held_out=held)
    result.model_labels = torch.from_numpy(labels)
    result.labels, result.confidence = torch.from_numpy(final), torch.from_numpy(conf)
    result.class_names = names
    promote_weak_clusters(result)
    for warning in result.qc["warnings"]:
        log.warning(warning)
    return result


def promote_weak_clusters(result: SegmentResult) -> None:
    """Weak clusters (`clustering_notes`: best silhouette under `WEAK_SILHOUETTE`) are a QC warning, not a note."""
    from fusionseg.sem.segment.identify import clustering_notes

    weak = clustering_notes(result.point_labels)
    if weak:
        result.info["notes"] = [n for n in result.info.get("notes", []) if n not in weak]
        result.qc.setdefault("warnings", []).extend(w for w in weak if w not in result.qc["warnings"])


def mark_not_sample(result: SegmentResult, labels: np.ndarray, conf: np.ndarray) -> tuple[str, ...]:
    """The voids stage (`fusionseg.sem.segment.voids`): pores/epoxy from the BSE written into the map ``labels``
    and its confidence ``conf`` (in place, whatever the model says); the class names, any added."""
    from fusionseg.sem.segment.voids import apply_voids, find_voids

    s, names = result.sample, tuple(result.class_names)
    with timed(result.timings, "voids_s"):
        finding, overruled = find_voids(s.image[0].numpy(), s.point_coords.numpy(), s.point_features,
                                        sem_meta(s.meta).energy_axis)  # fmt: skip
        if finding is not None:
            names = apply_voids(labels, conf, names, finding)
    note = finding.note if finding is not None else overruled
    if note is not None:
        result.info.setdefault("notes", []).append(note)
        log.info(note)
    if finding is not None:
        result.info["not_sample"] = {"pixels": int(finding.mask.sum()), "share": round(float(finding.mask.mean()), 5),
                                     "mount": finding.mode.mount, "bse_threshold": round(finding.mode.threshold, 4),
                                     "points_inside": finding.points_inside,
                                     "points_confirming": finding.points_confirming}  # fmt: skip
    return names


def blind_window_map(
    model: Any, rest: Sample, coords: Tensor, withheld: Tensor, config: SegmentConfig, how: str,
    fills: dict[str, Tensor],
) -> tuple[Tensor, Tensor, str]:  # fmt: skip
    """The map of ``rest`` (the field without the withheld points) over its central ``config.qc_window_px``
    window, IGNORE_INDEX outside it (the whole field when it fits); the withheld points inside the window
    (``coords``: every point of the field) and ``how`` saying so. ``fills``: the refiner's classic fills there."""
    h, w = rest.height, rest.width
    r0, c0, ch, cw = central_box(h, w, config.qc_window_px)
    window = central_window(rest, config.qc_window_px)
    with model.adapted_to(window, config.tile_px):  # kept points only (a no-op inside the map's: see its call)
        part, _ = predict_field(model, window, config.tile_px, config.overlap_px, fills)
    if (ch, cw) == (h, w):
        return part, withheld, how

    small = torch.int16 if rest.num_classes < 2**15 else torch.long  # read at points only: 4096², 34 MB, not 134

    def pasted(window_map: Tensor) -> Tensor:  # the window's map in a field of IGNORE_INDEX
        full = torch.full((h, w), IGNORE_INDEX, dtype=small)
        full[r0 : r0 + ch, c0 : c0 + cw] = window_map
        return full

    fills.update({method: pasted(fill) for method, fill in fills.items()})
    blind = pasted(part)
    rc = coords.round()
    inside = (rc[:, 0] >= r0) & (rc[:, 0] < r0 + ch) & (rc[:, 1] >= c0) & (rc[:, 1] < c0 + cw)
    withheld = withheld & inside
    return blind, withheld, f"{how}; scored on the {int(withheld.sum())} in the central {ch}x{cw} px window"


__all__ = ["blind_window_map", "finish_result", "mark_not_sample", "promote_weak_clusters", "withheld_points"]
