"""Sparse acquisition: keep the spectra of a few pixels of a dense EDS map, as a sparse measurement would."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fusionseg.data.samplers import sample_points
from fusionseg.errors import SegmentError
from fusionseg.sample import Sample, compact_counts
from fusionseg.sem.meta import sem_meta


def sparse_acquisition(
    sample: Sample,
    fraction: float | None = None,
    n_points: int | None = None,
    sampler: str = "random",
    seed: int = 0,
) -> Sample:
    """Keep the spectra of a few pixels of a dense map (``meta.domain.dense_spectra`` (H, W, C), `SemMeta`).

    Positions come from the registered ``sampler`` (rounded to pixels); pixels whose spectrum has
    zero counts (EDS acquired over only part of the field) are treated as not measured and skipped.
    """

    sem = sem_meta(sample.meta)
    cube = sem.dense_spectra
    if cube is None:
        raise SegmentError("--eds-fraction/--eds-points need a dense EDS map; this input already holds point spectra.")
    measured = sem.measured_mask
    measured = np.asarray(cube.sum(-1) > 0 if measured is None else measured, dtype=bool)
    h, w = measured.shape
    n_valid = int(measured.sum())
    if (fraction is None) == (n_points is None):
        raise SegmentError("give exactly one of fraction (0..1] or n_points (>= 1) for the sparse acquisition.")
    if fraction is not None and not 0 < fraction <= 1:
        raise SegmentError(f"eds fraction must be in (0, 1], got {fraction}; 0.01 keeps 1 % of the pixels.")
    n = int(round(fraction * n_valid)) if fraction is not None else int(n_points)
    if not 1 <= n <= n_valid:
        raise SegmentError(f"cannot keep {n} spectra: the map has {n_valid} measured pixels; ask for 1..{n_valid}.")
    rng = np.random.default_rng(seed)
    # Draw over the whole field, scaled up by the unmeasured share, then keep measured pixels.
    want = min(h * w, int(np.ceil(n * h * w / n_valid)))
    rc = np.rint(sample_points(sampler, h, w, want, rng, image=sample.image.numpy())).astype(np.int64)
    rc = rc[measured[rc[:, 0], rc[:, 1]]]
    if len(rc) < n:  # top up with random measured pixels (partial maps with an uneven sampler)
        free = np.flatnonzero(measured.ravel() & ~np.isin(np.arange(h * w), rc[:, 0] * w + rc[:, 1]))
        extra = rng.choice(free, size=n - len(rc), replace=False)
        rc = np.concatenate([rc, np.stack(np.divmod(extra, w), 1)])
    rc = rc[rng.permutation(len(rc))[:n]]
    spectra = gather_spectra(cube, rc[:, 0], rc[:, 1])
    domain = replace(sem, sampler=sampler, eds_fraction=n / (h * w))
    return replace(sample, point_coords=rc.astype(np.float32), point_features=spectra,
                   meta=replace(sample.meta, domain=domain), point_target=None)  # fmt: skip


def gather_spectra(cube: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(N, C) spectra (`compact_counts`) at pixels (rows, cols) of an (H, W, C) numpy or lazy dask cube (reads only
    those)."""
    if hasattr(cube, "vindex"):  # dask: point-wise fancy indexing, computed chunk by chunk
        return compact_counts(np.asarray(cube.vindex[rows, cols].compute()))
    return compact_counts(np.asarray(cube[rows, cols]))


def measured_points(sample: Sample) -> Sample:
    """Every measured pixel of a dense map as a point (small maps, or ``--eds-fraction 1``)."""
    return sparse_acquisition(sample, fraction=1.0, sampler="random")
