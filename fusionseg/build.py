"""Model, data and trainer from configs plus overrides, from Python: what ``fusionseg fit`` parses, minus argv.

    from fusionseg.build import build
    built = build("configs/default.yaml", {"model.backbone": "gat", "trainer.max_epochs": 2})
    built.trainer.fit(built.model, datamodule=built.datamodule)

`FusionSegCLI` (the LightningCLI behind ``fusionseg fit|validate|test|predict``) lives here so
that library code (the sweep, the demo, the benchmarks) builds runs without importing the command
module or patching ``sys.argv``: `build` hands LightningCLI's own parser an explicit argument
list, so config files, dotted overrides, ``class_path`` shorthands and the data -> model links
behave exactly as on the command line.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningCLI

from fusionseg.data.datamodule import FusionSegDataModule
from fusionseg.errors import FusionSegError
from fusionseg.models.module import ARCHITECTURE_KEYS, FusionSegModule, migrate_hparams


def trainer_defaults() -> dict[str, Any]:
    """Every run gets atomic checkpoint files, ``last.ckpt`` after each epoch, per-epoch seeding (exact
    resume) and deterministic algorithms where torch has them (`fusionseg.training`); the CSV log is
    flushed at every logging step, so a killed run's ``metrics.csv`` keeps every epoch that ran."""
    from fusionseg.training import EpochSeed, LastCheckpoint

    return {
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": "runs", "flush_logs_every_n_steps": 1},
        },
        "accelerator": "auto",
        "deterministic": "warn",
        "plugins": [{"class_path": "fusionseg.training.AtomicCheckpointIO"}],
        "callbacks": [LastCheckpoint(), EpochSeed()],
    }


class FusionSegCLI(LightningCLI):
    """LightningCLI whose model takes class names, widths and the domain's encoder context from the data."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        for attr in ("class_names", "point_context", "image_channels", "point_channels"):
            parser.link_arguments(f"data.{attr}", f"model.{attr}", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:  # noqa: ANN001 (jsonargparse parser and args)
        """Explicit ``args`` are parsed as given: no warning that ``sys.argv`` also holds a command's flags.

        ``--data.source NAME`` naming another source than the configs' drops their ``data.source_kwargs`` and
        ``data.train_source_kwargs`` (as jsonargparse drops a class's ``init_args`` when ``class_path`` changes):
        only the source keyword arguments given on the command line reach the new source."""
        if args is None:
            return super().parse_arguments(parser, args)
        if isinstance(args, dict):
            self.config = parser.parse_object(args)
            return None
        try:
            self.config = parser.parse_args(args)
        except ArgumentError as err:  # an unknown option: name the nearest known one
            from fusionseg.argtypes import nearest_options

            sub = next((a for a in args if a in getattr(self, "_subcommand_parsers", {})), None)
            options = list((self._subcommand_parsers[sub] if sub else parser)._option_string_actions)
            raise ArgumentError(None, nearest_options(str(err), options)) from err
        at = _source_override(args)
        if at is None:
            return None
        skip = 1 if "=" in args[at] else 2
        try:
            before = _data_source(parser.parse_args(args[:at] + args[at + skip :]))
        except Exception:  # without the override the arguments do not parse: treat the source as changed
            before = None
        if before != _data_source(self.config):
            first = next(i for i, a in enumerate(args) if a.split("=")[0] in SOURCE_FLAGS)
            reset = ["--data.source_kwargs=null", "--data.train_source_kwargs=null"]
            self.config = parser.parse_args(args[:first] + reset + args[first:])
        return None

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The trainer; ``trainer.enable_checkpointing=false`` also drops the default ``last.ckpt`` writer."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        trainer = self._get(self.config_init, "trainer", default={})
        if trainer.get("enable_checkpointing") is False:
            keep = [c for c in self.trainer_defaults.get("callbacks", []) if not isinstance(c, ModelCheckpoint)]
            self.trainer_defaults["callbacks"] = keep
        if self.subcommand == "predict":  # logs nothing: no logger, so no new version_N folder per run
            self.predict_root = getattr(trainer.get("logger"), "save_dir", None)  # the predictions go under it
            self.save_config_callback = None  # each field folder records its checkpoint and settings instead
            kwargs["logger"] = False
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        """Say where the checkpoints went: the best (by its monitored metric) and ``last.ckpt``."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        if not self.trainer.is_global_zero:
            return
        lines = []
        for cb in self.trainer.callbacks:
            if not isinstance(cb, ModelCheckpoint) or not cb.best_model_path:
                continue
            if cb.monitor is None:
                lines.append(f"  last: {cb.best_model_path}")
            else:
                score = f" ({cb.monitor} {float(cb.best_model_score):.4g})" if cb.best_model_score is not None else ""
                lines.append(f"  best{score}: {cb.best_model_path}")
        if lines:
            print("checkpoints written (give one to test/predict with --ckpt_path):\n" + "\n".join(lines))

    def after_test(self) -> None:
        self._say_where_logged("test")

    def after_validate(self) -> None:
        self._say_where_logged("validate")

    def _say_where_logged(self, what: str) -> None:
        logger = self.trainer.logger
        if self.trainer.is_global_zero and logger is not None and getattr(logger, "log_dir", None):
            print(f"{what} metrics logged to {logger.log_dir}")

    def _parse_ckpt_path(self) -> None:
        """LightningCLI rebuilds the model from ``--ckpt_path``'s hyper-parameters; say what that overrode."""
        sub = self.config.get("subcommand")
        before = _model_config(self.config, sub)
        section = self.config.get(sub) if sub else self.config
        ckpt = section.get("ckpt_path") if section is not None else None
        self.given_ckpt_path = ckpt  # as the user named it (a migrated copy below lives in a temporary folder)
        if ckpt not in (None, "last", "best", "hpc", "registry"):
            check_checkpoint(ckpt)
            migrated = migrated_checkpoint(ckpt)
            if migrated is not None:  # a checkpoint of an older version: read (and loaded) in today's terms
                section["ckpt_path"] = str(migrated)
        super()._parse_ckpt_path()
        after = _model_config(self.config, sub)
        diffs = [
            f"  {key}: config {before[key]!r} -> checkpoint {after[key]!r}"
            for key in ARCHITECTURE_KEYS
            if key in before and key in after and before[key] != after[key]
        ]
        if diffs:
            warnings.warn(
                "The checkpoint was trained with a different model configuration; its values are used:\n"
                + "\n".join(diffs),
                CheckpointConfigWarning,
                stacklevel=2,
            )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> Any:
        """``predict`` also takes ``--max_memory`` (bytes, or e.g. ``4GB``): larger fields go in tiles."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            from jsonargparse.typing import get_registered_type, register_type

            from fusionseg.argtypes import MemorySize

            if get_registered_type(MemorySize) is None:  # parsed from "4GB" or bytes; shown as "MemorySize"
                register_type(MemorySize, serializer=int, deserializer=MemorySize)

            parser.add_argument(
                "--max_memory", type=MemorySize, default=None,
                help="memory budget of one field, e.g. 4GB (default: the memory available now); fields "
                "larger than fits are predicted in overlapping tiles",
            )  # fmt: skip
            parser.add_argument(
                "--overwrite", type=bool, default=False,
                help="map again the fields already written with another checkpoint or other data settings "
                "(default: refuse, naming what differs)",
            )  # fmt: skip
        return parser

    def before_predict(self) -> None:
        """Set the memory budget (checked on every predict field of this process now, before any is mapped);
        when no prediction writer is configured, add the one registered for the data's domain
        (`PREDICTION_WRITERS`; SEM: each field's maps and reports under ``<logs>/predictions``), if there is one."""
        from lightning.pytorch.callbacks import BasePredictionWriter

        from fusionseg.distributed import share_of
        from fusionseg.inference import OVERLAP_PX, available_memory, check_memory, min_tile_px
        from fusionseg.registry import PREDICTION_WRITERS

        budget = self.config.predict.get("max_memory") or available_memory()
        predict = self.datamodule.dataset("predict") if hasattr(self.datamodule, "dataset") else []
        if self.model.hparams.task == "segmentation":  # this process's fields (DDP: Lightning's unrepeated split)
            for index in share_of(range(len(predict)), self.trainer.global_rank, self.trainer.world_size):
                check_memory(budget, predict[index], min_tile_px(OVERLAP_PX), flag="--max_memory")
        self.model.predict_max_memory = budget

        writers = [c for c in self.trainer.callbacks if isinstance(c, BasePredictionWriter)]
        domain = predict[0].meta.domain if len(predict) else None
        if not writers and domain is not None and domain.domain in PREDICTION_WRITERS:
            root = getattr(self, "predict_root", None) or self.trainer.default_root_dir
            writers = [PREDICTION_WRITERS.create(domain.domain, output_dir=Path(root) / "predictions")]
            self.trainer.callbacks.append(writers[0])
        record = self.predict_record()
        for writer in writers:  # a writer that keeps written fields checks they were made by this run's settings
            if hasattr(writer, "check_rerun"):
                writer.check_rerun(record, bool(self.config.predict.get("overwrite")))

    def predict_record(self) -> dict[str, Any]:
        """What ``predict``'s field folders record (`fusionseg.export.run_record`): the checkpoint and the data
        settings that make the fields and their points (the model's come with the checkpoint)."""
        from fusionseg.export.run_record import make_record

        section = self.config.predict
        data = section.get("data")
        data = data.as_dict() if hasattr(data, "as_dict") else dict(data or {})
        settings = {f"data.{k}": v for k, v in sorted(data.items())}
        settings["seed_everything"] = section.get("seed_everything")
        ckpt = getattr(self, "given_ckpt_path", section.get("ckpt_path"))
        if ckpt is None:  # no checkpoint: the config's model, its architecture is then a setting too
            model = section.get("model")
            settings["model"] = model.as_dict() if hasattr(model, "as_dict") else model
        return make_record(ckpt, settings)

    def after_predict(self) -> None:
        for writer in self.trainer.callbacks:
            if hasattr(writer, "written") and hasattr(writer, "skipped"):
                remapped = len(getattr(writer, "remapped", []))
                again = f", {remapped} of them again (--overwrite)" if remapped else ""
                print(f"wrote {len(writer.written)} fields to {writer.output_dir}{again} ({len(writer.skipped)} "
                      "already there)")  # fmt: skip


class CheckpointConfigWarning(UserWarning):
    """The configured model differs from the checkpoint's; the checkpoint's architecture wins."""


def check_checkpoint(path: str | Path) -> None:
    """Raise `FusionSegError` unless ``path`` is a readable PyTorch checkpoint with a model state."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FusionSegError(f"--ckpt_path {path} does not exist; give a .ckpt written by `fusionseg fit`.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # any failure of unpickling means: not a checkpoint
        raise FusionSegError(
            f"--ckpt_path {path} is not a readable checkpoint ({type(err).__name__}: {err}); give a .ckpt written "
            "by `fusionseg fit` (runs/lightning_logs/version_N/checkpoints/last.ckpt)."
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise FusionSegError(f"--ckpt_path {path} holds no model state_dict; give a .ckpt written by `fusionseg fit`.")


def migrated_checkpoint(path: str | Path) -> Path | None:
    """A temporary copy of an older checkpoint with today's hyper-parameters (`migrate_hparams`), or None when
    ``path`` needs none."""
    import atexit
    import shutil
    import tempfile

    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hparams = ckpt.get("hyper_parameters", {})
    new = migrate_hparams(hparams)
    if new == hparams:
        return None
    folder = tempfile.mkdtemp(prefix="fusionseg-ckpt-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    out = Path(folder) / Path(path).name
    torch.save({**ckpt, "hyper_parameters": new}, out)
    return out


class BuildError(FusionSegError):
    """A config or override the parser rejects; the message names it and how to fix it."""


SOURCE_FLAGS = ("--data.source", "--data.source_kwargs", "--data.train_source_kwargs")


def _source_override(args: Sequence[str]) -> int | None:
    """Index of the last ``--data.source NAME`` / ``--data.source=NAME`` in ``args`` (None: not overridden)."""
    hits = [i for i, a in enumerate(args) if a == "--data.source" or a.startswith("--data.source=")]
    return hits[-1] if hits else None


def _data_source(config: Any) -> Any:
    """``data.source`` of a parsed LightningCLI config (under its subcommand when there is one)."""
    sub = config.get("subcommand")
    return config.get(f"{sub}.data.source" if sub else "data.source")


def _model_config(config: Any, subcommand: str | None) -> dict[str, Any]:
    section = config.get(subcommand) if subcommand else config
    model = section.get("model") if section is not None else None
    return model.as_dict() if hasattr(model, "as_dict") else dict(model or {})


def make_cli(args: list[str] | None = None, run: bool = True, **parser_kwargs: Any) -> FusionSegCLI:
    """Build the LightningCLI (``run=False`` returns it with model, data and trainer instantiated)."""
    return FusionSegCLI(
        FusionSegModule,
        FusionSegDataModule,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=trainer_defaults(),
        parser_kwargs={
            "default_env": False,
            "exit_on_error": False,
            "allow_abbrev": False,
            **parser_kwargs,
        },  # errors reach run_command
    )


ConfigLike = str | Path | Mapping[str, Any]


class Built(NamedTuple):
    """What `build` returns: the instantiated parts and the resolved configuration (plain dict)."""

    model: FusionSegModule
    datamodule: L.LightningDataModule
    trainer: L.Trainer
    config: dict[str, Any]


def override_arg(key: str, value: Any) -> str:
    """``--key=value`` as the command line spells it (strings as is, anything else as JSON: null, [..], {..})."""
    return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"


def config_args(config: ConfigLike | Sequence[ConfigLike], overrides: Mapping[str, Any] | None = None) -> list[str]:
    """The argument list `build` parses: ``--config`` per config (later ones win), then the overrides."""
    configs = [config] if isinstance(config, str | Path | Mapping) else list(config)
    args: list[str] = []
    for c in configs:
        if isinstance(c, Mapping):
            args += ["--config", yaml.safe_dump(dict(c))]  # jsonargparse takes a config's text as well as a path
            continue
        if not Path(c).is_file():
            raise BuildError(f"Config {c} does not exist; pass a YAML file such as configs/default.yaml.")
        args += ["--config", str(c)]
    return args + [override_arg(k, v) for k, v in (overrides or {}).items()]


class _ParseOnlyCLI(FusionSegCLI):
    """Parses a configuration as `build` would and builds nothing (`check_config`)."""

    def _set_seed(self) -> None:  # leave the global RNG as it is
        return None

    def instantiate_classes(self) -> None:
        return None

    def after_instantiate_classes(self) -> None:
        return None


def _rejected(err: Exception, args: Sequence[str]) -> BuildError:
    shown = [a if len(a) < 200 else "<config text>" for a in args]
    return BuildError(
        f"The configuration was rejected: {err}\n  arguments: {' '.join(shown)}\n"
        "Check the key against `fusionseg fit --print_config` and the value's type."
    )


def check_config(config: ConfigLike | Sequence[ConfigLike], overrides: Mapping[str, Any] | None = None) -> None:
    """Raise `BuildError` when `build` would reject the config(s) and overrides as written (an unknown key, a
    value of the wrong type); parses only, in well under a second (`fusionseg compare` checks its grid so before
    it writes anything)."""
    args = config_args(config, overrides)
    try:
        _ParseOnlyCLI(FusionSegModule, FusionSegDataModule, args=args, run=False, trainer_defaults=trainer_defaults(),
                      parser_kwargs={"default_env": False, "exit_on_error": False, "allow_abbrev": False})  # fmt: skip
    except ArgumentError as err:
        raise _rejected(err, args) from err


def build(config: ConfigLike | Sequence[ConfigLike], overrides: Mapping[str, Any] | None = None) -> Built:
    """Instantiate model, datamodule and trainer from config file(s) or dict(s) plus dotted-key ``overrides``.

    ``overrides`` maps any config key to a value, e.g. ``{"model.backbone": "gat",
    "data.source_kwargs.size": 48, "trainer.max_time": None}``. Raises `BuildError` naming the bad
    key or value instead of exiting.
    """
    args = config_args(config, overrides)
    try:
        cli = make_cli(args=args, run=False, exit_on_error=False)
    except ArgumentError as err:
        raise _rejected(err, args) from err
    return Built(cli.model, cli.datamodule, cli.trainer, cli.config.as_dict())
