"""Accuracy against the EDS budget: fusionseg configs, the baselines a user would pick, the dense-EDS oracle.

    python benchmarks/bench_accuracy.py [--quick | --tiny] [--threads 2]

Protocol (fixed seeds): a held-out synthetic test split (the DataModule's test seed, 2000) with
every rock type; the same fields measured at each EDS fraction. Each trained method is trained
once on its own training split with a per-field EDS fraction drawn log-uniformly over the
benchmarked range (one model for every budget) for a fixed number of epochs (the budget is
printed with the measured seconds). Rows:

- ``bse-only``: the pixel-level cnn model's image branch alone (`image-only` fusion), no spectra.
- classic propagation of the identified point labels (`fusionseg.baselines`, settings chosen on the
  validation split by ``benchmarks/tune_classic.py``): ``nearest-point`` (Voronoi), ``superpixel-vote``
  (SLIC superpixels, majority vote of the points inside), ``random-walker`` (seeded random walker),
  ``geodesic`` (nearest point along BSE-gradient-weighted paths), ``fast-global-smoother`` (edge-aware
  diffusion of one-hot point channels).
- ``default``, trained here at the protocol's budget (other configs: ``fusionseg compare``).
- ``default-shipped``: the shipped default weights (``fusionseg/weights/default.ckpt``, made by ``make
  pretrain`` on 48 fields at the config's own epoch budget): what ``make demo`` and ``segment`` use.
- ``paper_gat-shipped``: the paper's GAT (Repka et al. 2025) trained by its recipe (``fusionseg/weights/
  paper_gat.ckpt``, made by ``make pretrain-gat`` from ``configs/paper_gat.yaml``; its record says epochs and
  device), beside the default. It is not trained here: at this protocol's budget it barely starts learning.
- ``ceiling-measured-phases``: a bound, not a method: every pixel right whose phase was found among
  the field's identified points, wrong elsewhere; no method that names phases from its spectra beats it.
- ``oracle-dense-eds``: a spectrum at *every* pixel, each identified against the library (the ceiling).

A second synthetic case, ``synthetic-superpixel-points``, measures the same fields where the
image-guided ``superpixel`` sampler puts the points (default models, baselines and bounds only).
A third, ``large-field``, holds one field per rock type at the protocol's ``large_size`` (512² in the full run;
seed ``LARGE_SEED``): at microscope field sizes 0.1 % is hundreds of spectra, so its rows measure propagation
where the 128² fields mostly measure whether a phase was hit at all. Every method and classic fill runs there;
of the bounds only the measured-phases ceiling (a dense-EDS oracle of a 512² field is 2 GB of spectra).

Point labels for the two baselines come from identifying each measured spectrum against the
mineral library (best Poisson-likelihood match, as an instrument would); that identification
accuracy is reported per fraction. A real-geometry case runs the same methods on the Repka
et al. (2025) BSE field and phase map (``../shared/data/real/repka2025``) with spectra simulated
at the sampled points (phase -> mineral chosen so that the simulated BSE order matches the real one),
over ``repka_draws`` independent point sets per fraction with their scores pooled (the per-field
training row: the first draw only).

Prints one JSON document; the runner (``python -m benchmarks``) also writes a Markdown table
and a plot of mIoU against EDS fraction.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
REPKA = ROOT.parent / "shared" / "data" / "real" / "repka2025"
ROCKS = ["granite", "basalt", "sulfide-ore", "carbonate", "sandstone", "grain-mount"]
TEST_SEED = 2000  # FusionSegDataModule test split of seed 0
LARGE_SEED = 2500  # the large-field case's held-out fields (the validation split's large cell: VAL_SEED + 500)
CLASSIC = ("nearest-point", "superpixel-vote", "random-walker", "geodesic", "fast-global-smoother")
BOUNDS = ("ceiling-measured-phases", "oracle-dense-eds")
BASELINES = (*CLASSIC, *BOUNDS)
GUIDED = "synthetic-superpixel-points"  # case: the held-out fields measured where the image-guided sampler says
LARGE = "large-field"  # case: one held-out field per rock type at microscope field size
SHIPPED = "-shipped"  # suffix: the shipped weights of that config (package data, made by `make pretrain`)
PER_FIELD = "segment-per-field"  # real-geometry case only: what `fusionseg segment` does without a checkpoint


@dataclass(frozen=True)
class Protocol:
    """What is trained and evaluated; ``epochs`` maps method -> training epochs."""

    size: int
    fields_per_rock: int
    train_fields: int
    val_fields: int
    fractions: tuple[float, ...]
    epochs: dict[str, int]
    repka: bool = True
    per_field_budget_s: float = 20.0  # `fusionseg segment` training budget per field (real-geometry case)
    repka_draws: int = 5  # point sets drawn on the one real field per fraction, scores pooled (draw 0: per-field row)
    large_size: int = 512  # side (px) of the large-field case's fields, one per rock type; 0: no such case


FRACTIONS = (0.001, 0.005, 0.01, 0.05)
# Epochs chosen so each model trains for roughly 2-4 min on 2 CPU threads at 128 px (seconds are reported);
# the default (superpixel regions) trains fastest per epoch.
FULL = Protocol(128, 2, 32, 2, FRACTIONS, {
    "bse-only": 16, "default": 40,
    f"default{SHIPPED}": 0,  # not trained here: the shipped weights `make demo` and `segment` use
    f"paper_gat{SHIPPED}": 0,  # not trained here: the paper's GAT by its recipe (`make pretrain-gat`)
})  # fmt: skip
# The other shipped configs (grid_cross_cnn, grid_late_sage, knn_hetero_sage) are compared with `fusionseg compare`.
QUICK = Protocol(96, 1, 12, 2, FRACTIONS, {"bse-only": 4, "default": 8, f"default{SHIPPED}": 0,
                                           f"paper_gat{SHIPPED}": 0},
                 per_field_budget_s=5.0, repka_draws=2, large_size=256)  # fmt: skip
TINY = Protocol(32, 1, 2, 1, FRACTIONS, dict.fromkeys(QUICK.epochs, 1), repka=True, per_field_budget_s=2.0,
                repka_draws=1, large_size=64)  # fmt: skip


# ----------------------------------------------------------------------------- fields
def test_samples(protocol: Protocol, fraction: float, sampler: str = "random") -> tuple[list, object]:
    """The held-out split at one EDS fraction: same fields (phase maps, BSE) for every fraction and sampler."""
    return held_out_fields(protocol.size, protocol.fields_per_rock, fraction, TEST_SEED, sampler)


def held_out_fields(
    size: int, per_rock: int, fraction: float, seed: int, sampler: str = "random", **kwargs: object
) -> tuple[list, object]:
    """``per_rock`` simulated ``size``² fields per rock type of ``seed`` at one EDS fraction, and their source;
    ``kwargs`` go to the simulator (e.g. ``bse_noise_scale``)."""
    from fusionseg.registry import DATA_SOURCES

    source = DATA_SOURCES.create(
        "sem-synthetic", num_fields=per_rock * len(ROCKS), size=size, rocks=ROCKS,
        eds_fraction=fraction, seed=seed, sampler=sampler, **kwargs,
    )  # fmt: skip
    return [source[i] for i in range(len(source))], source


def repka_mapping() -> tuple[dict[int, str], float]:
    """Real phase id -> library mineral, ordered like the real BSE levels; and the fitted BSE gain.

    Monotone assignment (dynamic programming) of phases sorted by mean BSE to distinct minerals sorted
    by backscatter coefficient eta, minimising sum (bse / gain - eta)^2 over a grid of gains.
    """
    import tifffile
    from skimage import io

    from fusionseg.sem.minerals import library

    bse = io.imread(REPKA / "bse.png").astype(np.float64) / 65535
    phases = tifffile.imread(REPKA / "phases.tiff")
    ids = np.unique(phases)
    levels = np.array([bse[phases == k].mean() for k in ids])
    order = np.argsort(levels)
    minerals = sorted((m for m in library() if not m.is_void), key=lambda m: m.eta)
    eta = np.array([m.eta for m in minerals])
    best = None
    for gain in np.linspace(1.2, 2.4, 25):
        cost, choice = _monotone_assignment(levels[order] / gain, eta)
        if best is None or cost < best[0]:
            best = (cost, choice, gain)
    _, choice, gain = best
    return {int(ids[o]): minerals[c].name for o, c in zip(order, choice, strict=True)}, float(gain)


def _monotone_assignment(targets: np.ndarray, values: np.ndarray) -> tuple[float, list[int]]:
    """Strictly increasing indices j_1 < ... < j_P into sorted ``values`` minimising sum (t_i - v_j_i)^2."""
    p, n = len(targets), len(values)
    cost = np.full((p + 1, n + 1), np.inf)
    cost[0, :] = 0.0
    for i in range(1, p + 1):  # cost[i, j]: first i targets placed among the first j values
        for j in range(i, n + 1):
            cost[i, j] = min(cost[i, j - 1], cost[i - 1, j - 1] + (targets[i - 1] - values[j - 1]) ** 2)
    picks, j = [], n
    for i in range(p, 0, -1):
        while cost[i, j] == cost[i, j - 1]:
            j -= 1
        picks.append(j - 1)
        j -= 1
    return float(cost[p, n]), picks[::-1]


def repka_samples(fractions: tuple[float, ...], draws: int = 1) -> tuple[dict, list, object]:
    """The real field at each fraction, ``draws`` point sets each (spectra simulated per mapped mineral): one
    150² field makes a single draw's mIoU swing by ~0.02 (a rare phase hit or missed); and its truth."""
    import tifffile
    from skimage import io

    from fusionseg.registry import SAMPLERS
    from fusionseg.sample import Sample, SampleMeta
    from fusionseg.sem.meta import EnergyAxis, SemMeta
    from fusionseg.sem.minerals import class_index, class_names
    from fusionseg.sem.physics import SpectrumModel

    mapping, gain = repka_mapping()
    bse = io.imread(REPKA / "bse.png").astype(np.float32) / 65535
    phases = tifffile.imread(REPKA / "phases.tiff")
    lut = np.full(int(phases.max()) + 1, -1, dtype=np.int64)
    for pid, name in mapping.items():
        lut[pid] = class_index(name)
    truth = lut[phases]
    spectra = SpectrumModel(class_names(), EnergyAxis(), 20.0, 130.0, 1000.0)
    h, w = truth.shape
    samples = {}
    meta = SampleMeta(class_names=class_names(), domain=SemMeta(spectra.axis, 20.0, 130.0), pixel_size_um=1.0,
                      name="repka2025")  # fmt: skip
    for f in fractions:
        samples[f] = []
        for draw in range(draws):
            rng = np.random.default_rng([11, round(f * 1e6), *([draw] if draw else [])])  # draw 0: the earlier runs'
            coords = SAMPLERS.create("random")(h, w, max(1, round(f * h * w)), rng)
            ij = np.rint(coords).astype(np.int64)
            ids = truth[ij[:, 0], ij[:, 1]]
            samples[f].append(Sample(image=bse[None], point_coords=coords, point_features=spectra.sample(ids, rng),
                                     meta=meta, target=truth, point_target=ids))  # fmt: skip
    info = {"mapping": {str(k): v for k, v in sorted(mapping.items())}, "bse_gain_fitted": round(gain, 3)}
    return samples, truth, (spectra, info)


# ----------------------------------------------------------------------------- methods
def baseline_map(method: str, sample, labels: np.ndarray) -> np.ndarray:
    """A classic method (``CLASSIC``) at its validation-chosen settings on the sample's points and ``labels``."""
    from fusionseg.baselines import classic_map

    image, coords = sample.image.numpy(), sample.point_coords.numpy()
    return classic_map(method, image, coords, labels, len(sample.meta.class_names))


def oracle_map(dense: np.ndarray, sample) -> np.ndarray:
    """Identify the spectrum at every pixel (dense cube (H, W, C)) against the library; pores by their counts."""
    from fusionseg.sem.identify import identify_spectra, library_references, mark_voids

    refs, usable = library_references(
        sample.meta.class_names, sample.meta.domain.energy_axis, sample.meta.domain.beam_energy_kev
    )
    h, w, c = dense.shape
    flat = torch.from_numpy(dense.reshape(-1, c))
    labels = torch.cat(
        [identify_spectra(flat[i : i + 4096], refs, allowed=usable).labels for i in range(0, h * w, 4096)]
    )
    return mark_voids(labels, flat, sample.meta.class_names).view(h, w).numpy()


def per_field_map(sample, budget_s: float) -> np.ndarray | str:
    """`fusionseg segment` without a checkpoint: a small model trained on this field's identified points alone
    (segment's classic floor off, so the row is the model's map).

    Returns the (H, W) map in library ids, or the error message when the field has too few points.
    """
    from fusionseg.sem.segment import SegmentConfig, SegmentError, segment_field

    found, compact = torch.unique(sample.point_target, return_inverse=True)
    names = tuple(sample.meta.class_names[k] for k in found.tolist())
    field = replace(sample, point_target=compact, target=None, meta=replace(sample.meta, class_names=names))
    config = SegmentConfig(time_budget_s=budget_s, progress=False, num_threads=torch.get_num_threads(),
                           classic_floor=False)  # fmt: skip
    try:
        return found[segment_field(field, config=config).labels].numpy()
    except SegmentError as err:
        return str(err)


def train_method(name: str, protocol: Protocol, workdir: Path) -> tuple[object, dict]:
    """Train one config for its protocol budget (``bse-only`` = the pixel-level cnn config, image-only fusion);
    ``<config>-shipped`` is not trained: the package's weights (its budget from their JSON record)."""
    from fusionseg.evaluation.sweep import train

    if name.endswith(SHIPPED):
        return shipped_weights(name.removesuffix(SHIPPED))
    config_name = "grid_cross_cnn" if name == "bse-only" else name
    lo, hi = min(protocol.fractions), max(protocol.fractions)
    overrides = {"seed_everything": 0, "data.test_fields": 1, "data.predict_fields": 1}
    overrides |= {
        "trainer.max_epochs": protocol.epochs[name], "trainer.max_time": None,
        "data.train_fields": protocol.train_fields, "data.val_fields": protocol.val_fields,
        "data.source_kwargs.size": protocol.size, "data.source_kwargs.rocks": ROCKS,
        "data.train_eds_fraction": [lo, hi],
    }  # fmt: skip
    if name == "bse-only":
        overrides |= {"model.fusion": "image-only", "model.fusion_kwargs": {"num_layers": 6}}
    built, budget = train(ROOT / "configs" / f"{config_name}.yaml", overrides, workdir / name)
    return built.model, budget


def shipped_weights(config: str = "default") -> tuple[object, dict]:
    """A config's shipped weights (``fusionseg/weights/<config>.ckpt``) and their budget as recorded by pretraining."""
    from fusionseg.pretrain import load_weights, shipped_weights_path, weights_record

    path = shipped_weights_path(config)
    record = json.loads(weights_record(path).read_text())
    budget = {"epochs": record["epochs_trained"], "train_fields": record["train_fields"], "batch_size": None,
              "seconds": record["train_seconds"], "device": record.get("device", "cpu"),
              "weights": f"fusionseg/weights/{path.name}"}  # fmt: skip
    return load_weights(path), budget


def predict_map(model, sample) -> np.ndarray:
    from fusionseg.evaluation.sweep import model_predictor

    return model_predictor(model)(sample)


# ----------------------------------------------------------------------------- the run
def evaluate(protocol: Protocol, methods: list[str], workdir: Path) -> dict:
    from fusionseg.baselines import measured_phases_ceiling
    from fusionseg.models.metrics import Scores
    from fusionseg.sem.identify import with_identified_point_labels
    from fusionseg.sem.minerals import class_names

    names = class_names()
    k = len(names)
    synthetic = {f: test_samples(protocol, f) for f in protocol.fractions}
    repka = repka_samples(protocol.fractions, protocol.repka_draws) if protocol.repka and REPKA.exists() else None
    cases = {"synthetic": {f: s for f, (s, _) in synthetic.items()}}
    # The same fields with the points where the image-guided sampler puts them (models trained on random points).
    cases[GUIDED] = {f: test_samples(protocol, f, sampler="superpixel")[0] for f in protocol.fractions}
    if protocol.large_size:
        cases[LARGE] = {f: held_out_fields(protocol.large_size, 1, f, LARGE_SEED)[0] for f in protocol.fractions}
    if repka is not None:
        cases["repka2025"] = repka[0]
    rows = {case: [*methods, *BASELINES, *([PER_FIELD] if case == "repka2025" else [])] for case in cases}
    rows[GUIDED] = [*(m for m in methods if m.startswith("default")), *BASELINES]
    if LARGE in cases:
        rows[LARGE] = [*methods, *CLASSIC, "ceiling-measured-phases"]
    scores = {case: {m: {f: Scores(k) for f in protocol.fractions} for m in rows[case]} for case in cases}
    ident_acc = {case: {} for case in cases}
    seconds = {case: dict.fromkeys(rows[case], 0.0) for case in cases}  # cost of each row per case (all fractions)

    oracle = _oracle_maps(protocol, synthetic, repka)
    identified = {}  # (case, fraction, field) -> the sample with identified point labels
    for case, by_fraction in cases.items():
        for f, samples in by_fraction.items():
            correct = total = 0
            for i, s in enumerate(samples):
                # Models get the identified labels too (they restrict predictions to minerals found among points).
                identified[case, f, i] = with_identified_point_labels(s)
                labels = identified[case, f, i].point_target.numpy()
                correct += int((labels == s.point_target.numpy()).sum())
                total += len(labels)
                truth = s.target.numpy()
                for b in CLASSIC:
                    start = time.perf_counter()
                    scores[case][b][f].add(baseline_map(b, s, labels), truth)
                    seconds[case][b] += time.perf_counter() - start
                scores[case]["ceiling-measured-phases"][f].add(measured_phases_ceiling(truth, labels), truth)
                if "oracle-dense-eds" in rows[case]:
                    scores[case]["oracle-dense-eds"][f].add(oracle[case][i], truth)
            ident_acc[case][str(f)] = round(correct / max(total, 1), 4)

    failures = {}
    if "repka2025" in cases:
        print(f"[accuracy] {PER_FIELD} on repka2025", file=sys.stderr, flush=True)
        for f, samples in cases["repka2025"].items():
            result = per_field_map(identified["repka2025", f, 0], protocol.per_field_budget_s)
            if isinstance(result, str):
                failures[f"repka2025/{PER_FIELD}/{f}"] = result
            else:
                scores["repka2025"][PER_FIELD][f].add(result, samples[0].target.numpy())

    budgets = {}
    for m in methods:
        print(f"[accuracy] training {m}", file=sys.stderr, flush=True)
        model, budgets[m] = train_method(m, protocol, workdir)
        with torch.inference_mode():
            for case, by_fraction in cases.items():
                if m not in rows[case]:
                    continue
                start = time.perf_counter()
                for f, samples in by_fraction.items():
                    for i, s in enumerate(samples):
                        scores[case][m][f].add(predict_map(model, identified[case, f, i]), s.target.numpy())
                seconds[case][m] = time.perf_counter() - start
        print(f"[accuracy] {m}: {budgets[m]}", file=sys.stderr, flush=True)

    results = {
        case: {
            m: {str(f): {"error": failures[key]} if (key := f"{case}/{m}/{f}") in failures else sc.summary(names)
                for f, sc in per.items()}
            for m, per in by_method.items()
        }
        for case, by_method in scores.items()
    }  # fmt: skip
    return {
        "protocol": {
            **asdict(protocol),
            "test_seed": TEST_SEED,
            "large_seed": LARGE_SEED,
            "rocks": ROCKS,
            "train_eds_fraction": [min(protocol.fractions), max(protocol.fractions)],
        },  # fmt: skip
        "fractions": [str(f) for f in protocol.fractions],
        "methods": [*methods, *BASELINES],
        "classic": list(CLASSIC),
        "training": budgets,
        "per_field_budget_s": protocol.per_field_budget_s,
        "identification_accuracy": ident_acc,
        "seconds_per_case": {case: {m: round(t, 1) for m, t in per.items() if t} for case, per in seconds.items()},
        "results": results,
        "repka2025": repka[2][1] if repka is not None else None,
    }


def _oracle_maps(protocol: Protocol, synthetic: dict, repka) -> dict:
    """Dense-EDS oracle maps (independent of the fraction), per case and field."""
    samples, source = synthetic[protocol.fractions[0]]
    out = {"synthetic": [oracle_map(source.field(i).dense_spectra(), s) for i, s in enumerate(samples)]}
    out[GUIDED] = out["synthetic"]  # same fields; the oracle measures every pixel whatever the sampler
    if repka is not None:
        _, truth, (spectra, _) = repka
        dense = spectra.sample(truth.ravel(), np.random.default_rng(12)).reshape(*truth.shape, -1)
        first = next(iter(repka[0].values()))
        out["repka2025"] = [oracle_map(dense, first[0])] * len(first)  # the dense map does not depend on the points
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small fields, short training (<= 5 min)")
    mode.add_argument("--tiny", action="store_true", help="smoke test: 32 px fields, one epoch")
    p.add_argument("--methods", nargs="+", choices=list(FULL.epochs), help="trained methods to run (default: all)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    protocol = TINY if a.tiny else QUICK if a.quick else FULL
    methods = a.methods or list(protocol.epochs)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fusionseg-bench-") as tmp:
        report = evaluate(protocol, methods, Path(tmp))
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["threads"] = a.threads
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
