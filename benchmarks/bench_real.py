"""Real hypermaps: agreement (ARI) of each method's map with the dense-EDS clustering, at a share of the spectra.

    python benchmarks/bench_real.py --out docs/results/real.json            # the real files this project holds
    python benchmarks/bench_real.py --files my_map.bcf other.h5oina         # any dense hypermap (RosettaSciIO)

Reference: the full spectrum image clustered as `fusionseg segment` clusters (Hellinger PCA, k-means, k by
silhouette, low-count spectra a class of their own; `fusionseg.sem.identify.cluster_points`), over the measured
pixels. For each share of the
spectra (``--fractions``) and sampling seed (``--seeds``) the kept spectra are mapped by ``segment`` (its
default path: the shipped weights on library minerals, or on the spectra's own clusters when the library names
too few of them; which one is recorded per file), and by classic fills of the kept spectra's own clusters:
nearest kept spectrum, geodesic, random walker. ARI is invariant to cluster numbering. Cases: both Bruker
hypermaps of ``../shared/data/real``
and the Repka et al. (2025) field with spectra simulated per mapped mineral (real geometry, not real spectra).
Prints one JSON line per (file, fraction, method) with mean ± std over seeds; ``--out`` keeps them all.
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

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
BRUKER = sorted((REAL / "bruker").glob("*.bcf"))
CLASSIC = ("nearest-point", "geodesic", "random-walker")


def repka_sample():
    """The Repka et al. field as a dense hypermap: real BSE, spectra simulated per mapped mineral."""
    from benchmarks.bench_acquisition import repka_field
    from fusionseg.sample import Sample, SampleMeta
    from fusionseg.sem.meta import SemMeta

    fld = repka_field()
    cube = fld.dense_spectra(np.random.default_rng(11))
    domain = SemMeta(fld.spectra.axis, fld.spectra.beam_energy_kev, dense_spectra=cube)
    return Sample(image=fld.bse[None], point_coords=np.zeros((0, 2)), point_features=np.zeros((0, cube.shape[-1])),
                  meta=SampleMeta(class_names=(), domain=domain, name="repka2025-simulated-spectra"))  # fmt: skip


def reference_map(sample) -> np.ndarray:
    """(H, W) clusters of every measured pixel's spectrum, -1 where none was measured."""
    from fusionseg.sem.identify import cluster_points
    from fusionseg.sem.meta import sem_meta

    cube = np.asarray(sem_meta(sample.meta).dense_spectra)
    h, w, c = cube.shape
    measured = cube.sum(-1) > 0
    ref = np.full((h, w), -1, dtype=np.int64)
    ref[measured] = cluster_points(torch.from_numpy(cube[measured].astype(np.float32))).labels.numpy()
    return ref


def method_maps(kept, seed: int) -> tuple[dict[str, np.ndarray], str]:
    """Each method's (H, W) map from the kept points, and the path `segment` took."""
    from fusionseg.baselines import classic_map
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.sem.identify import cluster_points
    from fusionseg.sem.segment import SegmentConfig, segment_field

    config = SegmentConfig(seed=seed, progress=False, num_threads=1, fallback_per_field=True)
    result = segment_field(kept, DEFAULT_WEIGHTS, config)
    maps = {"segment": result.labels.numpy()}
    labels = cluster_points(kept.point_features, seed=seed).labels.numpy()
    image, coords = kept.image.numpy(), kept.point_coords.numpy()
    for method in CLASSIC:
        maps[method] = classic_map(method, image, coords, labels, int(labels.max()) + 1)
    return maps, result.mode


def score_file(sample, fractions: list[float], seeds: list[int]) -> list[dict]:
    """Rows (fraction, method): ARI mean and std over seeds, on the reference's measured pixels."""
    from fusionseg.sem.data.acquisition import sparse_acquisition
    from fusionseg.sem.export.report import adjusted_rand_index

    ref = reference_map(sample)
    inside = ref >= 0
    rows = []
    for fraction in fractions:
        scores: dict[str, list[float]] = {}
        modes, start = set(), time.perf_counter()
        for seed in seeds:
            kept = sparse_acquisition(sample, fraction=fraction, seed=seed)
            maps, mode = method_maps(replace(kept, meta=replace(kept.meta, class_names=())), seed)
            modes.add(mode)
            for method, labels in maps.items():
                scores.setdefault(method, []).append(adjusted_rand_index(labels[inside], ref[inside]))
        for method, values in scores.items():
            rows.append({"file": sample.meta.name, "fraction": fraction, "method": method,
                         "ari_mean": round(float(np.mean(values)), 4), "ari_std": round(float(np.std(values)), 4),
                         "seeds": len(values), "reference_clusters": int(ref.max()) + 1,
                         "segment_path": sorted(modes), "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
    return rows


def main(argv: list[str]) -> None:
    from fusionseg.sem.data.readers import read_input

    p = argparse.ArgumentParser(prog="bench_real", description=__doc__.splitlines()[0])
    p.add_argument("--files", nargs="*", type=Path, default=None, help="dense hypermaps (default: the real files)")
    p.add_argument("--fractions", default="0.05,0.1,0.25")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    fractions = [float(f) for f in a.fractions.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    samples = [read_input(f) for f in (a.files if a.files else BRUKER)]
    samples = [replace(s, meta=replace(s.meta, name=s.meta.name or f.stem)) for s, f in
               zip(samples, a.files or BRUKER, strict=True)]  # fmt: skip
    if not a.files and (REAL / "repka2025").is_dir():
        samples.append(repka_sample())
    rows = []
    for sample in samples:
        for row in score_file(sample, fractions, seeds):
            print(json.dumps(row), flush=True)
            rows.append(row)
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
