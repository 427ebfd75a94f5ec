"""Benchmark one sampling of the motorcycle: per-image training vs. classic completions on the same samples.

python -m fusionseg_depth.evaluate --fraction 0.01 --seed 0 --json outputs/depth/f0.01_s0.json

Draws ``fraction`` of the valid pixels (seed ``seed``), trains the depth model on those samples alone
(hide and predict, `fusionseg_depth.train`), predicts from all of them, scores every valid
ground-truth pixel and prints a table with the baselines (nearest sample, linear, fast global smoother).
Writes the JSON and, next to it, a figure (image + samples, prediction, error map).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg_depth.baselines import fgs_fill, linear_fill, nearest_fill, tune_fgs
from fusionseg_depth.data import DepthInputError, Scene, check_fraction, motorcycle_scene
from fusionseg_depth.metrics import depth_scores
from fusionseg_depth.train import TrainSettings, fit_scene


def timed(fn: Any, *args: Any) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def baselines(scene: Scene, seed: int) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray], Any]:
    """Scores and maps of nearest, linear and the fast global smoother (settings by 5-fold CV on the samples)."""
    (fgs, _), tune_s = timed(tune_fgs, scene.rgb, scene.coords, scene.values, 5, seed)
    maps, seconds = {}, {}
    maps["nearest"], seconds["nearest"] = timed(nearest_fill, scene.coords, scene.values, scene.shape)
    maps["linear"], seconds["linear"] = timed(linear_fill, scene.coords, scene.values, scene.shape)
    maps["fgs"], seconds["fgs"] = timed(fgs_fill, scene.rgb, scene.coords, scene.values, fgs)
    seconds["fgs"] += tune_s
    scores = {name: {**depth_scores(m, scene.truth), "seconds": round(seconds[name], 3)} for name, m in maps.items()}
    return scores, maps, fgs


def evaluate(
    fraction: float,
    seed: int,
    settings: TrainSettings,
    window: tuple[int, int, int, int] | None = None,
    inductive: float | None = None,
) -> tuple[dict[str, Any], Scene, np.ndarray, dict[str, Any]]:
    """The result dict (the JSON's schema), the scored scene, the model's prediction and facts of its run.

    ``inductive``: train on the left ``inductive`` share of the columns, score on the rest (a region the
    model never saw, with its own samples); None: per image (train and score on the whole scene).
    """
    scene = motorcycle_scene(fraction, seed, window)
    train = scene
    if inductive is not None:
        cut = int(round(inductive * scene.shape[1]))
        train, scene = scene.region(0, cut), scene.region(cut, scene.shape[1])
    scores, _, _ = baselines(scene, seed)
    pred, info = fit_scene(train, settings, predict_on=scene)  # tunes its own base (multi-scale FGS) on the samples
    base = info["fgs"]
    scores["fgs_multiscale"] = {
        **depth_scores(fgs_fill(scene.rgb, scene.coords, scene.values, base), scene.truth),
        "seconds": None,  # tuned and computed inside the model's run
        "settings": [base.lam, base.sigma, base.coarse_sigma, base.coarse_weight],
    }
    result = {"fraction": fraction, "seed": seed, "points": int(len(scene.values)), **depth_scores(pred, scene.truth),
              "seconds": round(info["seconds"], 2), "baselines": scores}  # fmt: skip
    return result, scene, pred, info


def table(result: dict[str, Any], label: str = "fusionseg (per-image)") -> str:
    """Markdown table of the model (row ``label``) and the baselines."""
    rows = [(label, result)] + list(result["baselines"].items())
    head = "| method | RMSE px | MAE px | bad1 % | bad3 % | seconds |\n| --- | --- | --- | --- | --- | --- |"
    names = {"fgs": "fast global smoother (edge-aware classic)", "fgs_multiscale": "model's base, untrained"}
    lines = [f"| {names.get(n, n)} | {r['rmse']:.3f} | {r['mae']:.3f} | {r['bad1']:.2f} | {r['bad3']:.2f} | "
             f"{'-' if r['seconds'] is None else format(r['seconds'], '.1f')} |" for n, r in rows]  # fmt: skip
    return head + "\n" + "\n".join(lines)


def figure(scene: Scene, pred: np.ndarray, path: Path, title: str) -> None:
    """PNG: image with the samples, prediction, |error| map (invalid truth grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = np.isfinite(scene.truth)
    lo, hi = np.nanpercentile(scene.truth, [1, 99])
    err = np.where(valid, np.abs(pred - np.nan_to_num(scene.truth)), np.nan)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), constrained_layout=True)
    axes[0, 0].imshow(scene.rgb)
    axes[0, 0].scatter(scene.coords[:, 1], scene.coords[:, 0], s=1.5, c=scene.values, cmap="magma", vmin=lo, vmax=hi)
    axes[0, 0].set_title(f"image and {len(scene.values)} samples")
    axes[0, 1].imshow(scene.truth, cmap="magma", vmin=lo, vmax=hi)
    axes[0, 1].set_title("ground truth disparity (scoring only)")
    im = axes[1, 0].imshow(pred, cmap="magma", vmin=lo, vmax=hi)
    axes[1, 0].set_title("prediction")
    fig.colorbar(im, ax=axes[1, 0], label="disparity (px)")
    cmap = plt.get_cmap("inferno").with_extremes(bad="0.6")
    im = axes[1, 1].imshow(err, cmap=cmap, vmin=0, vmax=5)
    axes[1, 1].set_title("|error| (grey: no ground truth)")
    fig.colorbar(im, ax=axes[1, 1], label="px")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fusionseg_depth.evaluate", description=__doc__.splitlines()[0])
    d = TrainSettings()
    p.add_argument("--fraction", type=float, required=True, help="share of the valid pixels sampled, (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample draw and of training")
    p.add_argument("--json", type=Path, required=True, help="output JSON; the figure goes next to it (.png)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"crops per step (default {d.batch})")
    p.add_argument("--crop", type=int, default=d.crop, help=f"crop size in px (default {d.crop})")
    p.add_argument("--hide", type=float, default=d.hide, help=f"share of samples hidden per crop (default {d.hide})")
    p.add_argument("--window", type=int, nargs=4, metavar=("ROW", "COL", "H", "W"), help="use only this sub-image")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--inductive", type=float, metavar="SHARE", help="train on this left share of the columns, "
                   "score on the rest (generalisation); default: per image")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    try:
        check_fraction(a.fraction)
    except DepthInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", module="lightning")
    settings = TrainSettings(steps=a.steps, batch=a.batch, crop=a.crop, hide=a.hide, seed=a.seed)
    try:
        window = None if a.window is None else tuple(a.window)
        result, scene, pred, info = evaluate(a.fraction, a.seed, settings, window, a.inductive)
    except DepthInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_json(result, a.json)
    png = a.json.with_suffix(".png")
    figure(scene, pred, png, f"motorcycle, {100 * a.fraction:g} % samples, seed {a.seed}: RMSE {result['rmse']:.2f} px")
    mode = "per image" if a.inductive is None else f"inductive: trained on the left {a.inductive:g} of the columns"
    print(f"{mode}; fraction {a.fraction}, seed {a.seed}, {result['points']} samples in the scored region")
    print(f"training {a.steps} steps x {a.batch} "
          f"crops of {a.crop} px, {a.hide:g} hidden; {info['seconds']:.1f} s wall, {info['cpu_seconds']:.1f} s CPU "
          f"({a.threads} thread(s)), load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(table(result, "fusionseg (per-image)" if a.inductive is None else "fusionseg (inductive)"))
    print(f"wrote {a.json} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
