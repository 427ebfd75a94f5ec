"""``fusionseg predict`` writes as it goes: a Lightning `BasePredictionWriter` with ``segment``'s writers.

Each predicted field gets ``<output_dir>/<field name>/`` with the same files ``fusionseg segment``
writes (phase TIFF, uncertainty, overlay, modal/grain/association tables, QC in ``summary.json``,
reports), written into a staging folder published when complete. A field whose folder was published
completely is skipped, so a re-run resumes where a stopped one ended. Under DDP (``--trainer.strategy=ddp``)
each process predicts and writes its own share of the fields (Lightning's unrepeated sampler): each once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from fusionseg.registry import PREDICTION_WRITERS


def field_folder(output_dir: Path, name: str, index: int) -> Path:
    """``output_dir/<name>`` (``field-<index>`` for unnamed fields; path separators replaced)."""
    safe = (name or f"field-{index:04d}").replace("/", "_").replace("\\", "_")
    return Path(output_dir) / safe


def is_written(folder: Path) -> bool:
    """A field folder is done when it was published completely (`fusionseg.export.safe_io.is_complete`)."""
    from fusionseg.export.safe_io import is_complete

    return is_complete(folder)


@PREDICTION_WRITERS.register("sem")
class FieldWriter(BasePredictionWriter):
    """Write each field's outputs when its batch is predicted (``write_interval="batch"``).

    Args:
        output_dir: folder receiving one sub-folder per field.
        honour_points: confidently identified measured pixels keep their mineral (as ``segment``).
        held_out_share: share of identified points withheld for the held-out QC check (0 = none).
    """

    def __init__(self, output_dir: str | Path = "runs/predictions", honour_points: bool = True,
                 held_out_share: float = 0.1) -> None:  # fmt: skip
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.honour_points, self.held_out_share = honour_points, held_out_share
        self.written: list[Path] = []
        self.skipped: list[Path] = []
        self.remapped: list[Path] = []
        self.record: dict[str, Any] | None = None  # this run's checkpoint and settings (`check_rerun`)
        self.overwrite = False

    def check_rerun(self, record: dict[str, Any], overwrite: bool = False) -> None:
        """Before any field is predicted: every field folder already in ``output_dir`` was made with ``record``'s
        checkpoint and settings, else `fusionseg.export.run_record.RerunError` names what differs and the fix
        (``overwrite``: those folders are mapped again instead)."""
        from fusionseg.export.run_record import rerun_decision

        self.record, self.overwrite = record, overwrite
        if not self.output_dir.is_dir():
            return
        for folder in sorted(p for p in self.output_dir.iterdir() if p.is_dir() and is_written(p)):
            rerun_decision(folder, record, overwrite, flag="--overwrite=true",
                           elsewhere="another folder (--trainer.logger.init_args.save_dir=DIR)")  # fmt: skip

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        indices = list(batch_indices) if batch_indices is not None else [None] * len(batch)
        for i, (sample, pred) in enumerate(zip(batch, prediction, strict=True)):
            index = indices[i] if indices[i] is not None else batch_idx * len(batch) + i
            self.write_field(pl_module, sample, pred, int(index))

    def write_field(self, model: Any, sample: Any, pred: dict[str, Any], index: int) -> Path | None:
        """Outputs of one predicted field (skipped when already written); returns its folder."""
        from fusionseg.export.run_record import rerun_decision, write_record
        from fusionseg.export.writers import staged_folder
        from fusionseg.sem.export.qc import qc_lines
        from fusionseg.sem.export.report import write_segment_outputs
        from fusionseg.sem.meta import hide_target
        from fusionseg.sem.segment import SegmentConfig, SegmentResult, finish_result, withheld_points

        folder = field_folder(self.output_dir, sample.meta.name, index)
        again = is_written(folder) and self.record is not None and rerun_decision(folder, self.record, self.overwrite)
        if is_written(folder) and not again:
            self.skipped.append(folder)
            return None
        sample = sample.to(torch.device("cpu"))
        shown = hide_target(sample, folder.name)  # a labelled field: the report gives the ARI against its target
        config = SegmentConfig(honour_points=self.honour_points, held_out_share=self.held_out_share, progress=False)
        result = SegmentResult(pred["labels"].cpu(), pred["confidence"].cpu(), tuple(model.class_names), shown,
                               "checkpoint (fusionseg predict)")  # fmt: skip
        withheld = withheld_points(shown, config.held_out_share, config.seed)
        how = f"{int(withheld.sum())} identified points withheld, map predicted without them"
        result = finish_result(result, model, config, withheld, how)
        with staged_folder(folder) as staging:
            write_segment_outputs(staging, result, input_path=f"predict split, field {index}")
            if self.record is not None:
                write_record(staging, self.record)
        print(f"{folder.name}: " + "; ".join(qc_lines(result.qc)[:3]))
        self.written.append(folder)
        if again:
            self.remapped.append(folder)
        return folder
