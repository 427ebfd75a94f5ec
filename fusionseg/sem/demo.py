"""``fusionseg demo``: map a held-out synthetic SEM field with the shipped weights (or train first, ``--train``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fusionseg.export.safe_io import check_output_folder
from fusionseg.export.writers import (
    staged_folder,
    write_json,
)
from fusionseg.sample import IGNORE_INDEX
from fusionseg.sem.export.report import write_field_outputs


def run_demo(
    config: Path,
    out: Path,
    max_epochs: int | None = None,
    extra_configs: list[Path] = (),
    train: bool = True,
    weights: Path | None = None,
) -> Path:
    """Test a model on ``config``'s held-out split, segment the first predict-split field; return the output folder.

    ``train=False`` uses ``weights`` (default: the shipped `fusionseg.pretrain.DEFAULT_WEIGHTS`) and
    trains nothing: seconds, the same figures on every machine as the weights' JSON record. ``train=True``
    trains ``config`` from scratch first. ``extra_configs`` are layered on top of ``config``.
    """
    from fusionseg.build import make_cli
    from fusionseg.pretrain import DEFAULT_WEIGHTS, evaluation_cli, load_weights, weights_record

    if not config.exists():
        raise FileNotFoundError(f"Config {config} does not exist; pass --config configs/<name>.yaml.")
    check_output_folder(out, (config,), overwrite=True)  # before training, not after
    args = ["--config", str(config)]
    for extra in extra_configs:
        args += ["--config", str(extra)]
    if max_epochs is not None:
        args.append(f"--trainer.max_epochs={max_epochs}")
    start = time.perf_counter()
    recorded = None
    if train:
        cli = make_cli(args=args, run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    else:
        weights = Path(weights or DEFAULT_WEIGHTS)
        cli = evaluation_cli(config, args[2:])
        cli.model = load_weights(weights)
        if weights_record(weights).is_file():
            recorded = json.loads(weights_record(weights).read_text()).get("held_out", {})
    train_s = time.perf_counter() - start
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]

    out = out.resolve()
    with staged_folder(out, inputs=(config,)) as staging:
        sample = cli.datamodule.dataset("predict")[0]
        pred = cli.model.predict_samples([sample])[0]
        labels = pred["labels"]
        point_labels = sample.point_target.numpy()
        rc = sample.point_coords.round().long()
        disagree = (labels[rc[:, 0], rc[:, 1]] != sample.point_target).numpy() & (point_labels != IGNORE_INDEX)
        held_out = write_field_outputs(staging, sample, labels, pred["confidence"], sample.meta.pixel_size_um,
                                       point_labels=point_labels, disagree=disagree)  # fmt: skip
        summary = {
            "config": str(config),
            "model": "trained from scratch" if train else f"shipped weights {weights.name}",
            "train_seconds": round(train_s, 1) if train else 0.0,
            "eds_fraction": cli.datamodule.hparams.eds_fraction,
            "held_out_field": {"name": sample.meta.name, **held_out},
            "test_split": {k: float(v) for k, v in test.items()},
        }
        if recorded is not None:
            summary["test_split_recorded_with_weights"] = recorded
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
    miou = summary["test_split"].get("test/miou", float("nan"))
    if train:
        print(f"test split: mIoU {miou:.3f}; trained in {train_s:.0f} s")
    else:
        ref = f" (recorded with the weights: {recorded['test/miou']:.3f})" if "test/miou" in (recorded or {}) else ""
        print(f"test split: mIoU {miou:.3f}{ref}; shipped weights {weights}, no training")
    print(f"Outputs written to {out}")
    return out
