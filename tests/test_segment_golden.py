"""`segment_field`'s maps, bit for bit, on small fixed-seed simulated fields through its main paths.

Maps change only on purpose. A refactor (e.g. splitting `fusionseg.sem.segment` into stages) must leave every
digest in ``tests/data/segment_golden.json`` as it is. A change meant to alter the maps (new identification, a new
model, new weights) regenerates the file and says so in its commit:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python tests/test_segment_golden.py      # rewrites tests/data/segment_golden.json

Each case stores the sha256 of the label map (int64 class ids), of the confidence map rounded to 1e-4 (NaN as -1),
the result's mode and the names of its stage timings (the keys `benchmarks/bench_segment.py` prints).
Single-threaded torch (``num_threads=1``): the digests hold for this machine's CPU kernels.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "data" / "segment_golden.json"


def _fields() -> dict[str, Any]:
    """Two small simulated fields (granite 64² at 2 % EDS; basalt 96² at 5 %, enough points for early stopping)."""
    from fusionseg.registry import DATA_SOURCES

    granite = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=64, rocks=["granite"], eds_fraction=0.02,
                                  seed=5)[0]  # fmt: skip
    basalt = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=96, rocks=["basalt"], eds_fraction=0.05,
                                 seed=21)[0]  # fmt: skip
    unlabelled = {"granite": replace(granite, point_target=None, target=None),
                  "basalt": replace(basalt, point_target=None, target=None)}  # fmt: skip
    few = replace(granite, point_coords=granite.point_coords[:3], point_features=granite.point_features[:3],
                  point_target=None, target=None)  # fmt: skip
    return {**unlabelled, "three_points": few}


def _broken_weights(folder: Path) -> Path:
    """The shipped weights with the refiner's scores upside down: the classic floor replaces their map."""
    from fusionseg.paths import DEFAULT_WEIGHTS

    ckpt = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=False)
    ckpt["state_dict"]["refiner.mlp.4.weight"] = -ckpt["state_dict"]["refiner.mlp.4.weight"]
    path = folder / "broken.ckpt"
    torch.save(ckpt, path)
    return path


def _cases(folder: Path) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(name, run) for each path: shipped weights, their cluster path, a classic fill, per-field training, the
    nearest-point map of too few points and the classic floor."""
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.sem.segment import SegmentConfig, segment_field

    fields = _fields()
    base = SegmentConfig(progress=False, num_threads=1)
    shipped = replace(base, fallback_per_field=True)  # as `fusionseg segment` maps with the shipped weights
    tiny = replace(base, max_epochs=3, batches_per_epoch=2)
    for name in ("granite", "basalt"):
        s = fields[name]
        yield f"{name}/shipped_weights", lambda s=s: segment_field(s, DEFAULT_WEIGHTS, shipped)
        yield f"{name}/clusters", lambda s=s: segment_field(s, DEFAULT_WEIGHTS, replace(shipped, mode="clusters"))
        yield f"{name}/geodesic", lambda s=s: segment_field(s, None, replace(base, method="geodesic"))
        yield f"{name}/per_field", lambda s=s: segment_field(s, None, tiny)
    yield "three_points/per_field", lambda: segment_field(fields["three_points"], None, tiny)
    broken = replace(base, adapt_refiner=False, honour_points=False)
    yield "basalt/classic_floor", lambda: segment_field(fields["basalt"], _broken_weights(folder), broken)


def _digest(result: Any) -> dict[str, Any]:
    labels = np.ascontiguousarray(result.labels.numpy().astype(np.int64))
    conf = np.nan_to_num(np.round(result.confidence.numpy().astype(np.float64), 4), nan=-1.0)
    return {
        "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
        "confidence_sha256": hashlib.sha256(np.ascontiguousarray(conf).tobytes()).hexdigest(),
        "mode": result.mode,
        "timings": sorted(result.timings),
    }


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # SegmentConfig(num_threads=1) sets the process's count


def test_segment_maps_match_the_golden_digests(tmp_path: Path, one_thread: None) -> None:
    expected = json.loads(GOLDEN.read_text())
    got = {name: _digest(run()) for name, run in _cases(tmp_path)}
    assert sorted(got) == sorted(expected), "cases changed: regenerate tests/data/segment_golden.json on purpose"
    for name in expected:
        assert got[name] == expected[name], f"{name}: the map changed (see this file's docstring to regenerate)"


def regenerate() -> None:
    """Rewrite ``tests/data/segment_golden.json`` from the code as it is now."""
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        digests = {name: _digest(run()) for name, run in _cases(Path(tmp))}
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(digests, indent=2) + "\n")
    print(f"wrote {len(digests)} digests to {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    regenerate()
