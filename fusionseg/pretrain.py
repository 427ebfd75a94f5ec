"""``make pretrain`` / ``python -m fusionseg.pretrain``: the shipped default weights, from the built-in simulator.

    python -m fusionseg.pretrain [--config configs/default.yaml] [--out fusionseg/weights/default.ckpt] [--threads 1]
                                 [--log-dir DIR] [any --trainer./--model./--data. override]

Trains ``--config`` (fixed ``seed_everything``, the config's ``trainer.max_epochs``; any wall-clock cap
of the config is removed so the budget is epochs, not seconds), keeps the weights of the best
validation epoch (the config's ``ModelCheckpoint``; the last epoch when it has none), writes a small
checkpoint holding only what `FusionSegModule.load_from_checkpoint` needs, then reloads that file
and records its held-out test-split figures in ``<out>.json`` (`weights_record`). The test that
ships with the weights (``tests/test_pretrained.py``) compares against that record, not a literal.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from fusionseg.argtypes import ArgumentParser
from fusionseg.paths import DEFAULT_CONFIG, DEFAULT_WEIGHTS, PACKAGE_DIR, WEIGHTS_DIR  # noqa: E402, F401 (re-exported)

QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def shipped_weights_path(config: str) -> Path:
    """``fusionseg/weights/<config>.ckpt``: the shipped weights of a config by its name (``default``, ``paper_gat``)."""
    return WEIGHTS_DIR / f"{config}.ckpt"


def weights_record(weights: Path) -> Path:
    """The JSON written beside a weights file: provenance and its held-out figures."""
    return Path(weights).with_suffix(".json")


def save_weights(model: Any, path: Path) -> Path:
    """A minimal checkpoint (state dict, hyper-parameters, versions): tens of kB instead of optimizer state."""
    import lightning as L

    from fusionseg.export.writers import atomic_path

    hparams = {k: v for k, v in dict(model.hparams).items() if not k.startswith("_")}
    payload = {
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "hyper_parameters": hparams,
        "pytorch-lightning_version": L.__version__,
        "fusionseg_encoder_fitted": True,
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_weights(path: Path = DEFAULT_WEIGHTS) -> Any:
    """`FusionSegModule` from a weights file, on CPU, in eval mode; a clear error when it is absent."""
    from fusionseg.models.module import FusionSegModule

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights {path} do not exist; run `make pretrain` (python -m fusionseg.pretrain) to create them."
        )
    return FusionSegModule.load_from_checkpoint(str(path), map_location="cpu", weights_only=False).eval()


def _cli(config: Path, extra: list[str], forced: list[str] = ()) -> Any:
    """LightningCLI of ``config`` + the user's ``extra`` overrides (or config files), then ``forced`` settings."""
    from fusionseg.build import make_cli

    with mock.patch.object(sys, "argv", sys.argv[:1]):  # LightningCLI would also read this command's flags
        return make_cli(args=["--config", str(config), *extra, *QUIET, *forced], run=False)


def evaluation_cli(config: Path, extra: list[str] = ()) -> Any:
    """``config``'s data and trainer for testing a given model: no training, no logger, no config.yaml written."""
    from lightning.pytorch.cli import SaveConfigCallback

    cli = _cli(config, list(extra), ["--trainer.max_epochs=0"])
    cli.trainer.callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, SaveConfigCallback)]
    return cli


def held_out_figures(model: Any, config: Path = DEFAULT_CONFIG, extra: list[str] = ()) -> dict[str, float]:
    """Test-split metrics of ``model`` on ``config``'s held-out fields (its ``data`` section, fixed seeds)."""
    cli = evaluation_cli(config, list(extra))
    test = cli.trainer.test(model, datamodule=cli.datamodule, verbose=False)[0]
    return {k: round(float(v), 6) for k, v in test.items() if not k.startswith("test/iou/")}


def pretrain(
    config: Path, out: Path, threads: int = 1, extra: list[str] = (), log_dir: Path | None = None
) -> dict[str, Any]:
    """Train ``config`` on its simulator splits, write ``out`` and its JSON record; returns the record.

    ``log_dir``: also write the learning curve there (Lightning's CSV logger: ``metrics.csv``, one row per
    logged step and validation epoch), the evidence that the epoch budget reached a plateau.
    """
    torch.set_num_threads(threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        forced = ["--trainer.max_time=null", f"--trainer.default_root_dir={work}"]
        if log_dir is not None:
            logger = "lightning.pytorch.loggers.CSVLogger"
            forced += [f"--trainer.logger={logger}", f"--trainer.logger.save_dir={log_dir}", "--trainer.logger.name="]
        cli = _cli(config, list(extra), forced)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        ckpt = getattr(cli.trainer.checkpoint_callback, "best_model_path", "")
        chosen = "last epoch"
        if ckpt:
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            cli.model.load_state_dict(state["state_dict"])
            chosen = f"best val/miou epoch ({state.get('epoch')})"
        epochs = cli.trainer.current_epoch
    train_s = time.perf_counter() - start
    save_weights(cli.model, out)
    figures = held_out_figures(load_weights(out), config, list(extra))
    hp = cli.datamodule.hparams
    record = {
        "command": " ".join(["python -m fusionseg.pretrain --config", _shown(config), f"--threads {threads}", *extra]),
        "config": str(Path(config).name),
        "overrides": list(extra),
        "seed_everything": int(cli.config.get("seed_everything") or 0),
        "epochs_trained": epochs,
        "weights_from": chosen,
        "train_fields": hp.train_fields,
        "train_eds_fraction": hp.train_eds_fraction,
        "test_fields": hp.test_fields,
        "test_eds_fraction": hp.eds_fraction,
        "held_out": figures,
        "train_seconds": round(train_s, 1),
        "threads": threads,
        "device": _device_name(cli.trainer),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.system()}",
        "size_bytes": Path(out).stat().st_size,
    }
    Path(weights_record(out)).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _device_name(trainer: Any) -> str:
    """Where the weights were trained: ``cpu`` or ``cuda (<GPU name>)`` (floating-point results differ between them)."""
    device = trainer.strategy.root_device
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type


def _shown(path: Path) -> str:
    """``path`` relative to the repository root when inside it (a record that reads the same on every machine)."""
    try:
        return str(Path(path).resolve().relative_to(PACKAGE_DIR.parent))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m fusionseg.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="LightningCLI config to train")
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file (a JSON record goes beside it)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--log-dir", type=Path, help="write the learning curve (metrics.csv) under this folder")
    a, extra = p.parse_known_args(argv)
    if not a.config.is_file():
        p.error(f"config {a.config} does not exist; pass --config configs/<name>.yaml.")
    record = pretrain(a.config, a.out, a.threads, extra, a.log_dir)
    print(json.dumps(record["held_out"], indent=2))
    print(f"wrote {a.out} ({record['size_bytes']} bytes) and {weights_record(a.out)} in {record['train_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
