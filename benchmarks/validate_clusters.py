"""The cluster path of `segment` on the validation split: ARI against the true phases (never the test split).

    python benchmarks/validate_clusters.py                                   # the fast rows
    python benchmarks/validate_clusters.py --methods per-field-clusters      # ~1.5 min per field

Twelve 128² seed-1000 fields (two per rock type) at 1 % and 5 % EDS. Each field's spectra are labelled as a
real hypermap's would be when the mineral library names too few of them: by clustering
(`fusionseg.sem.identify.cluster_points`). Methods: ``weights-clusters`` (`segment --mode clusters`: the
shipped weights on the clusters), ``per-field-clusters`` (`segment --per-field --mode clusters`),
``weights-library`` (the default path, library minerals, for comparison), and the classic fills of
`fusionseg.baselines` on the same clusters. Prints one JSON line per fraction: mean ARI and seconds per field.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import ROCKS  # noqa: E402
from tune_classic import VAL_SEED  # noqa: E402

FAST = "weights-clusters,weights-library,nearest-point,geodesic,random-walker"


def field_map(method: str, sample, seed: int) -> np.ndarray:
    """(H, W) map of ``sample`` (points without labels) by ``method``."""
    from fusionseg.baselines import classic_map
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.sem.identify import cluster_points
    from fusionseg.sem.segment import SegmentConfig, segment_field

    config = SegmentConfig(progress=False, num_threads=1, seed=seed)
    if method == "weights-clusters":
        return segment_field(sample, DEFAULT_WEIGHTS, replace(config, mode="clusters", fallback_per_field=True)).labels
    if method == "weights-library":
        return segment_field(sample, DEFAULT_WEIGHTS, replace(config, fallback_per_field=True)).labels
    if method == "per-field-clusters":
        return segment_field(sample, None, replace(config, mode="clusters")).labels
    labels = cluster_points(sample.point_features, seed=seed).labels.numpy()
    return classic_map(method, sample.image.numpy(), sample.point_coords.numpy(), labels, int(labels.max()) + 1)


def main(argv: list[str]) -> None:
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.export.report import adjusted_rand_index

    p = argparse.ArgumentParser(prog="validate_clusters", description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=FAST)
    p.add_argument("--fractions", default="0.01,0.05")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    for fraction in (float(f) for f in a.fractions.split(",")):
        source = DATA_SOURCES.create("sem-synthetic", num_fields=12, size=128, rocks=ROCKS, eds_fraction=fraction,
                                     seed=VAL_SEED)  # fmt: skip
        ari: dict[str, list[float]] = {}
        seconds: dict[str, list[float]] = {}
        for i in range(len(source)):
            s = source[i]
            truth = s.target.numpy()
            blind = replace(s, point_target=None, target=None, meta=replace(s.meta, class_names=()))
            for method in a.methods.split(","):
                start = time.perf_counter()
                labels = np.asarray(field_map(method, blind, seed=0))
                seconds.setdefault(method, []).append(time.perf_counter() - start)
                ari.setdefault(method, []).append(adjusted_rand_index(labels, truth))
        row = {m: {"ari": round(float(np.mean(v)), 4), "seconds": round(float(np.mean(seconds[m])), 2)}
               for m, v in ari.items()}  # fmt: skip
        print(json.dumps({"fraction": fraction, **row}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
