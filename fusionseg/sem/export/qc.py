"""Quality control of a phase map against its own measurements (every ``segment``/``predict`` result).

The measured points are the only ground truth a user has. This module compares the map with them:

- agreement: share of the confidently identified points whose pixel the map gives their mineral
  (of the model's map before honouring, and of the final map);
- held-out check: share of withheld points (never seen by the prediction) the map gets right;
- shares of the spectra that were unclassified (no library match) or void (almost no counts);
- phases found among the points but absent from the map, and a single-phase map of a field whose
  points show several phases: warnings, never silent.

`honour_points` makes the map say, at each confidently identified measured pixel, that mineral.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fusionseg.sample import IGNORE_INDEX, label_counts

NOT_MEASURED = "not measured"
UNCLASSIFIED = "unclassified"
# names of map classes that are not a phase: the per-field model's class for unidentified points
UNKNOWN_NAMES = ("unknown",)
# Evidence too thin for a map (a WARNING with the number that triggered it): fewer spectra than MIN_SPECTRA or
# than MIN_POINT_SHARE of the pixels (at 0.1 % a phase of 1 % area gets ~10 points in a 100k-px field: fewer and
# minor phases go unseen); a held-out check under MIN_HELD_OUT agreement (worse than a coin between two phases).
MIN_SPECTRA = 30
MIN_POINT_SHARE = 0.001
MIN_HELD_OUT = 0.5


@dataclass
class PointCalls:
    """What the measurements say, per point: ``rows``/``cols`` (N,) pixel indices, ``names`` (N,) the
    identified phase (``None`` = unclassified), ``confident`` (N,) bool (identified with high confidence),
    ``void`` (N,) bool (the beam hit a pore: almost no counts)."""

    rows: np.ndarray
    cols: np.ndarray
    names: list[str | None]
    confident: np.ndarray
    void: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, keep: np.ndarray) -> PointCalls:
        idx = np.flatnonzero(keep)
        return PointCalls(self.rows[idx], self.cols[idx], [self.names[i] for i in idx], self.confident[idx],
                          self.void[idx])  # fmt: skip


def point_calls(
    coords: np.ndarray, labels: np.ndarray | None, names: tuple[str, ...], shape: tuple[int, int], void: np.ndarray
) -> PointCalls:
    """`PointCalls` from point coordinates (N, 2) (row, col, px) and labels (N,) indexing ``names``.

    A point is confident when it has a label that is a phase (not ``IGNORE_INDEX``, not ``unknown``).
    """
    h, w = shape
    rc = np.rint(np.asarray(coords, dtype=np.float64)).astype(np.int64).reshape(-1, 2)
    rows, cols = rc[:, 0].clip(0, h - 1), rc[:, 1].clip(0, w - 1)
    n = len(rc)
    lab = np.full(n, IGNORE_INDEX, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    called = [names[k] if k != IGNORE_INDEX and names[k] not in UNKNOWN_NAMES else None for k in lab.tolist()]
    confident = np.array([c is not None for c in called], dtype=bool)
    return PointCalls(rows, cols, called, confident, np.asarray(void, dtype=bool).reshape(n))


def map_names_at(labels: np.ndarray, class_names: tuple[str, ...], calls: PointCalls) -> list[str | None]:
    """The map's phase name at each point's pixel (``None`` where the map has no phase)."""
    values = labels[calls.rows, calls.cols]
    return [class_names[v] if 0 <= v < len(class_names) else None for v in values.tolist()]


def agreement(labels: np.ndarray, class_names: tuple[str, ...], calls: PointCalls) -> dict[str, Any]:
    """Share of confidently identified points whose pixel the map gives their phase; the disagreeing ones."""
    at = map_names_at(labels, class_names, calls)
    idx = np.flatnonzero(calls.confident)
    agree = np.array([at[i] == calls.names[i] for i in idx], dtype=bool)
    return {
        "points": int(len(idx)),
        "agreeing": int(agree.sum()),
        "share": None if len(idx) == 0 else round(float(agree.mean()), 4),
        "disagreeing_points": idx[~agree].tolist(),
    }


def honour_points(labels: np.ndarray, class_names: tuple[str, ...], calls: PointCalls) -> np.ndarray:
    """``labels`` with each confidently identified point's pixel set to its phase (when the map has that class)."""
    index = {n: k for k, n in enumerate(class_names)}
    out = labels.copy()
    for i in np.flatnonzero(calls.confident):  # loop over points (hundreds), not pixels
        k = index.get(calls.names[i])
        if k is not None:
            out[calls.rows[i], calls.cols[i]] = k
    return out


def phase_counts(calls: PointCalls) -> dict[str, int]:
    """Confidently identified points per phase, most first."""
    names = [calls.names[i] for i in np.flatnonzero(calls.confident)]
    values, counts = np.unique(np.array(names, dtype=object), return_counts=True) if names else ([], [])
    return dict(sorted(zip(values, (int(c) for c in counts), strict=True), key=lambda kv: -kv[1]))


def quality_checks(
    labels: np.ndarray,
    class_names: tuple[str, ...],
    calls: PointCalls,
    model_labels: np.ndarray | None = None,
    held_out: dict[str, Any] | None = None,
    single_phase_share: float = 0.99,
    min_points_per_phase: int = 2,
    min_model_agreement: float = 0.8,
) -> dict[str, Any]:
    """QC figures of a final map ``labels`` (H, W) (``IGNORE_INDEX`` = not measured) and its warnings.

    ``model_labels``: the model's map before `honour_points`; ``held_out``: the result of a held-out
    check (`held_out_agreement`). Warnings: too thin evidence (`thin_evidence`); phases among the points absent
    from the (model's) map;
    one phase covering ``single_phase_share`` of the mapped pixels while the points show at least two
    phases with ``min_points_per_phase`` points each; the model's agreement under ``min_model_agreement``.
    """
    n = len(calls)
    found = phase_counts(calls)
    counts = label_counts(labels, len(class_names))
    mapped_size = int(counts.sum())
    in_map = {class_names[k] for k in np.flatnonzero(counts)}
    qc: dict[str, Any] = {
        "points": n,
        "points_identified": int(calls.confident.sum()),
        "unclassified_share": round(float(np.mean([c is None for c in calls.names])) if n else 0.0, 4),
        "void_share": round(float(calls.void.mean()) if n else 0.0, 4),
        "phases_among_points": found,
        "agreement": agreement(labels, class_names, calls),
        "held_out": held_out,
        "warnings": [],
    }
    warnings: list[str] = qc["warnings"]
    if model_labels is not None:
        qc["agreement_model"] = agreement(model_labels, class_names, calls)
        model_in = {class_names[k] for k in np.flatnonzero(label_counts(model_labels)) if k < len(class_names)}
        lost = [p for p in found if p not in model_in]
        qc["phases_absent_from_model_map"] = lost
        if lost:
            where = "shown only at its measured pixels" if not set(lost) - in_map else "absent from the final map"
            warnings.append(
                f"phases found among the points but not mapped by the model: "
                f"{', '.join(f'{p} ({found[p]} points)' for p in lost)}; {where}"
            )
    model_share = qc.get("agreement_model", {}).get("share")
    if model_share is not None and model_share < min_model_agreement:
        warnings.append(
            f"the model's map agrees with only {100 * model_share:.0f} % of the identified points: between the "
            "measured pixels the map is unreliable (more points, --per-field, or --mode clusters may help)"
        )
    absent = [p for p in found if p not in in_map]
    qc["phases_absent_from_map"] = absent
    if absent and model_labels is None:
        warnings.append(
            "phases found among the points but absent from the map: "
            + ", ".join(f"{p} ({found[p]} points)" for p in absent)
        )
    several = [p for p, c in found.items() if c >= min_points_per_phase]
    if mapped_size and counts.max() >= single_phase_share * mapped_size and len(several) >= 2:
        top = class_names[int(counts.argmax())]
        warnings.append(
            f"the map is {100 * counts.max() / mapped_size:.1f} % {top} although the points show "
            f"{len(several)} phases ({', '.join(several)}): the map does not resolve this field"
        )
    warnings += thin_evidence(n, labels.size, held_out)
    if n and qc["unclassified_share"] > 0.2:
        warnings.append(
            f"{100 * qc['unclassified_share']:.0f} % of the spectra match no library mineral: they are "
            "'unclassified' (consider --mode clusters, or a library entry for the missing phase)"
        )
    return qc


def thin_evidence(points: int, pixels: int, held_out: dict[str, Any] | None) -> list[str]:
    """Warnings for evidence too thin to trust the map: too few spectra for the field (``MIN_SPECTRA``,
    ``MIN_POINT_SHARE`` of ``pixels``) and a held-out check under ``MIN_HELD_OUT``, each with its number."""
    out = []
    share = points / max(pixels, 1)
    if points < MIN_SPECTRA or share < MIN_POINT_SHARE:
        out.append(f"only {points} spectra for {pixels} pixels ({100 * share:.2g} % of the field; fewer than "
                   f"{MIN_SPECTRA} or under {100 * MIN_POINT_SHARE:.1f} % is too few): minor phases may be missed "
                   "and the map between points is a guess; measure more points")  # fmt: skip
    if held_out and held_out.get("share") is not None and held_out["share"] < MIN_HELD_OUT:
        out.append(f"the held-out check failed: {held_out['agreeing']} of {held_out['points']} withheld points "
                   f"({100 * held_out['share']:.0f} %, under {100 * MIN_HELD_OUT:.0f} %) got their phase from a map "
                   "made without them: the map between measured points is not supported by the data")  # fmt: skip
    return out


def held_out_agreement(labels: np.ndarray, class_names: tuple[str, ...], calls: PointCalls, how: str) -> dict:
    """Agreement of a map predicted *without* the points ``calls`` with those points' identified phases."""
    result = agreement(labels, class_names, calls)
    result.pop("disagreeing_points")
    return {**result, "how": how}


def qc_lines(qc: dict[str, Any]) -> list[str]:
    """Human-readable QC lines (console and report)."""

    def pct(a: dict | None) -> str:
        if not a or a.get("share") is None:
            return "n/a (no identified points)"
        return f"{100 * a['share']:.1f} % ({a['agreeing']} of {a['points']} identified points)"

    lines = [f"map agrees with its measured points: {pct(qc['agreement'])}"]
    if "agreement_model" in qc:
        lines.append(f"model's map before honouring the points: {pct(qc['agreement_model'])}")
    held = qc.get("held_out")
    if held and held.get("share") is not None:
        lines.append(f"held-out check ({held['how']}): {pct(held)}")
    elif held:
        lines.append(f"held-out check: not available ({held.get('how', 'too few points')})")
    lines.append(
        f"spectra unclassified: {100 * qc['unclassified_share']:.1f} %, void (pores): {100 * qc['void_share']:.1f} %"
    )
    lines += [f"WARNING: {w}" for w in qc["warnings"]]
    return lines
