"""Whole counts held as int16 (`fusionseg.sample.compact_counts`): exact, and every `segment` path maps such a
field exactly as it maps the same counts in float32."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from fusionseg.paths import DEFAULT_WEIGHTS
from fusionseg.registry import DATA_SOURCES
from fusionseg.sample import MAX_COMPACT_COUNT, compact_counts
from fusionseg.sem.data.readers import read_input
from fusionseg.sem.segment import SegmentConfig, segment_field


def test_compact_counts_is_exact_and_views_uint16() -> None:
    counts = np.array([[0, 5, MAX_COMPACT_COUNT], [7, 0, 1]], dtype=np.uint16)
    compact = compact_counts(counts)
    assert compact.dtype == np.int16 and np.shares_memory(compact, counts)  # a view, no copy
    assert np.array_equal(compact.astype(np.int64), counts.astype(np.int64))
    assert compact_counts(counts.astype(np.uint8)).dtype == np.int16
    for too_big in (counts.astype(np.int32) + 1, counts.astype(np.uint16) + 1):  # int32, or a count over 32767
        wide = compact_counts(too_big)
        assert wide.dtype == np.float32 and np.array_equal(wide, too_big.astype(np.float32))
    floats = counts.astype(np.float64) + 0.5  # not proven whole: float32
    assert compact_counts(floats).dtype == np.float32


def test_folder_counts_are_read_as_int16(tmp_path: Path) -> None:
    spectra = np.random.default_rng(0).poisson(3.0, (50, 64)).astype(np.uint16)
    spectra[:, 10] += 1  # every point measured
    coords = np.random.default_rng(1).uniform(0, 31, (50, 2))
    np.savez(tmp_path / "eds.npz", coords=coords, spectra=spectra, offset_ev=0.0, scale_ev=200.0)
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "bse.png")
    sample = read_input(tmp_path)
    assert sample.point_features.dtype == torch.int16
    assert np.array_equal(sample.point_features.numpy(), spectra)
    spectra[0, 0] = 40000  # a count int16 cannot hold: float32, exact
    np.savez(tmp_path / "eds.npz", coords=coords, spectra=spectra, offset_ev=0.0, scale_ev=200.0)
    wide = read_input(tmp_path).point_features
    assert wide.dtype == torch.float32 and np.array_equal(wide.numpy(), spectra.astype(np.float32))


@pytest.fixture(scope="module")
def field():
    return DATA_SOURCES.create("sem-synthetic", num_fields=1, size=128, rocks=["granite"], eds_fraction=0.02,
                               seed=5)[0]  # fmt: skip


@pytest.mark.parametrize(
    ("checkpoint", "settings"),
    [
        (DEFAULT_WEIGHTS, {"fallback_per_field": True}),  # shipped weights, library labels
        (DEFAULT_WEIGHTS, {"fallback_per_field": True, "mode": "clusters"}),
        (None, {"max_epochs": 2}),  # per-field training (PCA encoder fitted on the counts)
        (None, {"method": "geodesic"}),
    ],
    ids=["weights", "weights-clusters", "per-field", "geodesic"],
)
def test_int16_counts_map_as_float32(field, checkpoint, settings) -> None:
    assert field.point_features.max() <= MAX_COMPACT_COUNT
    assert torch.equal(field.point_features, field.point_features.round())  # the simulator's counts are whole
    config = SegmentConfig(num_threads=1, progress=False, tile_px=96, **settings)
    as_float = segment_field(field, checkpoint, config)
    compact = replace(field, point_features=field.point_features.to(torch.int16))
    as_int16 = segment_field(compact, checkpoint, config)
    assert as_int16.sample.point_features.dtype == torch.int16  # held compact to the end (the outputs read it)
    assert as_int16.mode == as_float.mode
    assert torch.equal(as_int16.labels, as_float.labels)
    assert torch.equal(as_int16.confidence, as_float.confidence)
    assert as_int16.qc == as_float.qc


class _CountsNotWidened(TorchFunctionMode):
    """Fails on a torch reduction or float conversion of a whole int16 count array (``numel`` values or more):
    torch widens int16 to int64 before reducing it, 4x the array (an 8192² field's spectra: 10 GiB)."""

    WIDENING = frozenset({"sum", "mean", "nansum", "std", "var", "float", "double", "half"})

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel = numel

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if getattr(func, "__name__", "") in self.WIDENING:
            for a in args:
                if isinstance(a, torch.Tensor) and a.dtype == torch.int16 and a.numel() >= self.numel:
                    raise AssertionError(f"torch {func.__name__} of every int16 count at once")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", ["auto", "clusters"])
def test_int16_counts_are_never_widened_whole(field, mode, monkeypatch) -> None:
    """The shipped-weights path reads int16 counts in chunks (identification, encoding, totals, mean spectra):
    chunks of 64 spectra here, so a whole-array conversion is told apart from a chunk."""
    import fusionseg.models.module_predict as module
    import fusionseg.sem.identify as identify

    monkeypatch.setattr(identify, "CHUNK_SPECTRA", 64)
    monkeypatch.setattr(module, "ENCODE_CHUNK_BYTES", 64 * 4 * field.point_features.shape[1])
    compact = replace(field, point_features=field.point_features.to(torch.int16))
    assert compact.num_points > 64
    config = SegmentConfig(num_threads=1, progress=False, tile_px=96, fallback_per_field=True, mode=mode)
    with _CountsNotWidened(compact.point_features.numel()):
        segment_field(compact, DEFAULT_WEIGHTS, config)
    with pytest.raises(AssertionError, match="every int16 count"), _CountsNotWidened(10):
        compact.point_features.sum(1)  # the guard itself
