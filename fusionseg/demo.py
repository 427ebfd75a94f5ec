"""``fusionseg demo``: train the default config on synthetic SEM data, map a held-out field."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from fusionseg.export.safe_io import check_output_folder
from fusionseg.export.writers import (
    modal_table,
    staged_folder,
    write_json,
    write_modal_csv,
    write_overlay_png,
    write_phase_tiff,
)
from fusionseg.models.metrics import iou_from_confusion, modal_fractions
from fusionseg.sample import IGNORE_INDEX, Sample


def field_metrics(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> dict:
    """mIoU, pixel accuracy, per-class IoU and modal-area error (mean |area % diff|) of one field."""
    keep = truth != IGNORE_INDEX
    p, t = pred[keep], truth[keep]
    p = torch.where((p < 0) | (p >= num_classes), num_classes, p)  # "unknown" predictions count as wrong
    k1 = num_classes + 1
    confmat = torch.bincount(t * k1 + p, minlength=k1 * k1).view(k1, k1)
    iou = iou_from_confusion(confmat)[:num_classes]
    pred_known = torch.where((pred < 0) | (pred >= num_classes), IGNORE_INDEX, pred)
    present = modal_fractions(truth, num_classes) + modal_fractions(pred_known, num_classes) > 0
    modal_err = (modal_fractions(pred_known, num_classes) - modal_fractions(truth, num_classes)).abs()[present]
    return {
        "miou": float(np.nanmean(iou.numpy())),
        "pixel_acc": float((p == t).double().mean()),
        "modal_area_error_percent": float(100 * modal_err.mean()),
    }


def write_field_outputs(out: Path, sample: Sample, labels: torch.Tensor, confidence: torch.Tensor) -> dict:
    """Phase map TIFF, overlay PNG, modal CSV (and metrics when the sample has a target)."""
    names = list(sample.meta.class_names)
    stem = sample.meta.name or "field"
    lab = labels.numpy().astype(np.int64)
    write_phase_tiff(out / f"{stem}_phases.tif", lab, names)
    write_overlay_png(
        out / f"{stem}_overlay.png",
        sample.image[0].numpy(),
        lab,
        names,
        points=sample.point_coords.numpy(),
        truth=None if sample.target is None else sample.target.numpy(),
        title=f"{stem}: {sample.num_points} spectra ({100 * sample.num_points / lab.size:.2g} % of pixels)",
    )
    write_modal_csv(out / f"{stem}_modal.csv", modal_table(lab, names, sample.meta.pixel_size_um))
    result = {"mean_confidence": float(confidence.mean())}
    if sample.target is not None:
        result.update(field_metrics(labels, sample.target, len(names)))
    if sample.target is not None and sample.point_target is not None:
        result.update(measured_phases_bound(sample))
    return result


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


def run_demo(config: Path, out: Path, max_epochs: int | None = None, extra_configs: list[Path] = ()) -> Path:
    """Train ``config``, test it, segment the first predict-split field; return the output folder.

    ``extra_configs`` are layered on top of ``config`` (later files override earlier ones).
    """
    from fusionseg.cli import make_cli

    if not config.exists():
        raise FileNotFoundError(f"Config {config} does not exist; pass --config configs/<name>.yaml.")
    check_output_folder(out, (config,), overwrite=True)  # before training, not after
    args = ["--config", str(config)]
    for extra in extra_configs:
        args += ["--config", str(extra)]
    if max_epochs is not None:
        args.append(f"--trainer.max_epochs={max_epochs}")
    start = time.perf_counter()
    cli = make_cli(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    train_s = time.perf_counter() - start
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]

    out = out.resolve()
    with staged_folder(out, inputs=(config,)) as staging:
        sample = cli.datamodule.dataset("predict")[0]
        pred = cli.model.predict_samples([sample])[0]
        held_out = write_field_outputs(staging, sample, pred["labels"], pred["confidence"])
        summary = {
            "config": str(config),
            "train_seconds": round(train_s, 1),
            "eds_fraction": cli.datamodule.hparams.eds_fraction,
            "held_out_field": {"name": sample.meta.name, **held_out},
            "test_split": {k: float(v) for k, v in test.items()},
        }
        write_json(staging / "metrics.json", summary)
    print(
        f"\nheld-out field {sample.meta.name}: mIoU {held_out['miou']:.3f}, pixel accuracy {held_out['pixel_acc']:.3f}"
    )
    if "miou_ceiling_measured_phases" in held_out:
        missed = ", ".join(held_out["phases_without_a_point"]) or "none"
        print(
            f"  mIoU ceiling when only phases found among its {sample.num_points} spectra can be named: "
            f"{held_out['miou_ceiling_measured_phases']:.3f} (phases no spectrum hit: {missed})"
        )
    print(f"test split: mIoU {summary['test_split'].get('test/miou', float('nan')):.3f}; trained in {train_s:.0f} s")
    print(f"Outputs written to {out}")
    return out
