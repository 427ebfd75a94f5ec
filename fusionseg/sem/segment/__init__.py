"""``fusionseg segment`` as named stages; every public name of the former ``segment.py`` is importable from here.

Where a change belongs (one job per module; `pipeline.segment_field` shows their order):

=================  ==========================================================================================
``command``        the command line: arguments, ``segment_main``
``run``            the fields an input names mapped and written into ``--out`` (several fields, resume, shares)
``inputs``         fields named and read, their measured points, the request's checks, the memory budget's tile
``acquire``        ``--acquire``: an adaptive acquisition replayed on a dense map
``pipeline``       one field's stages in order (`segment_field`)
``identify``       the measured spectra labelled (library or clusters)
``checkpoint``     a checkpoint loaded, its energy axis, the field rebinned and labelled in its classes
``weights``        the map with trained weights (the shipped ones by default), their fall-back to per-field training
``per_field``      per-field training and its map (``crops``: its training data and best-weights callback)
``classic``        ``--method``: a classic fill instead of a model
``check``          the held-out check and the result's finish (coverage, honoured points, QC)
``floor``          the classic floor: a classic fill replaces a map the withheld points prove worse
``config``         `SegmentConfig` and `SegmentResult`
``timing``         the stages' timings (the keys of ``SegmentResult.timings``)
=================  ==========================================================================================
"""

from fusionseg.errors import SegmentError
from fusionseg.sem.data.acquisition import measured_points, sparse_acquisition
from fusionseg.sem.segment.acquire import ACQUIRE_BUDGET, acquire_field, check_acquisition_args
from fusionseg.sem.segment.check import finish_result, withheld_points
from fusionseg.sem.segment.checkpoint import adapt_to_checkpoint, checkpoint_axis, load_checkpoint_model, mapped_size
from fusionseg.sem.segment.classic import classic_segment
from fusionseg.sem.segment.command import acquisition_amount, confidence, parse_args, segment_main
from fusionseg.sem.segment.config import SegmentConfig, SegmentResult
from fusionseg.sem.segment.crops import KeepBestWeights, PointCropDataset, validation_crops
from fusionseg.sem.segment.identify import (
    WEAK_SILHOUETTE,
    cluster_class_map,
    clustering_notes,
    identify_points,
    with_point_labels,
)
from fusionseg.sem.segment.inputs import (
    VENDOR_SUFFIXES,
    budget_tile,
    check_request,
    input_paths,
    prepare_points,
    read_field,
)
from fusionseg.sem.segment.per_field import (
    build_field_model,
    class_weights,
    split_validation,
    train_on_points,
    validation_points,
)
from fusionseg.sem.segment.pipeline import segment_field
from fusionseg.sem.segment.run import run_segment, segment_one, shipped_or_given_checkpoint
from fusionseg.sem.segment.timing import STAGE_SECONDS
from fusionseg.sem.spectrum import rebin_spectra

__all__ = [
    "ACQUIRE_BUDGET",
    "STAGE_SECONDS",
    "VENDOR_SUFFIXES",
    "WEAK_SILHOUETTE",
    "KeepBestWeights",
    "PointCropDataset",
    "SegmentConfig",
    "SegmentError",
    "SegmentResult",
    "acquire_field",
    "acquisition_amount",
    "adapt_to_checkpoint",
    "budget_tile",
    "build_field_model",
    "check_acquisition_args",
    "check_request",
    "checkpoint_axis",
    "class_weights",
    "classic_segment",
    "cluster_class_map",
    "clustering_notes",
    "confidence",
    "finish_result",
    "identify_points",
    "input_paths",
    "load_checkpoint_model",
    "mapped_size",
    "measured_points",
    "parse_args",
    "prepare_points",
    "read_field",
    "rebin_spectra",
    "run_segment",
    "segment_field",
    "segment_main",
    "segment_one",
    "shipped_or_given_checkpoint",
    "sparse_acquisition",
    "split_validation",
    "train_on_points",
    "validation_crops",
    "validation_points",
    "with_point_labels",
    "withheld_points",
]
