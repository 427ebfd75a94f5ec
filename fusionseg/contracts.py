"""What every pluggable part promises: one contract per kind of part, all in this file.

A part is registered by name in a `fusionseg.registry` registry (``@BACKBONES.register("my-gnn")``)
or named by ``class_path`` in a config, and is built by the core with the keyword arguments listed
here plus the ``*_kwargs`` of the config. ``tests/plugin_pkg`` implements each contract from
outside the package and ``tests/test_contracts.py`` runs them through every consumer.

======================  ==============================  =================================================
part                    registry                        built by / called by
======================  ==============================  =================================================
`DataSource`            ``DATA_SOURCES``                `FusionSegDataModule.dataset` (one per split)
`PointEncoder`          ``POINT_ENCODERS``              `FusionSegModule` (``in_dim`` from the data)
`GraphBuilder`          ``GRAPH_BUILDERS``              `FusionSegModule.build_graphs`
`Backbone`              ``BACKBONES``                   every fusion module (``Fusion.make_backbone``)
fusion / head / loss    ``FUSIONS`` / ``HEADS`` /       `FusionSegModule`
                        ``LOSSES``
`DomainMeta`            ``DOMAINS`` (by its ``domain``)  `Sample` validation, `fusionseg.data.io`, the CLI,
                                                        memory budgets (``arrays()``: `SampleMeta.nbytes`)
point labeller (hook)   ``POINT_LABELLERS``             `FusionSegDataModule` (``data.point_labels``)
prediction writer       ``PREDICTION_WRITERS``          ``fusionseg predict`` (by the data's domain name)
command (hook)          ``COMMANDS``                    ``fusionseg COMMAND`` (`fusionseg.cli`)
======================  ==============================  =================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from torch import Tensor, nn

from fusionseg.errors import FusionSegError
from fusionseg.sample import DomainMeta, Sample  # DomainMeta lives with the Sample it describes

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData


class ContractError(FusionSegError):
    """A plugged-in part breaks its contract; the message names the part and what it must provide."""


@runtime_checkable
class DataSource(Protocol):
    """A finite, indexable sequence of `Sample` s for one split.

    Constructed as ``Source(split=..., num_fields=..., seed=..., **source_kwargs)``: ``split`` is one of
    ``train``/``val``/``test``/``predict``; ``num_fields`` is that split's field count (a generating
    source makes that many; a file source may serve fewer); ``seed`` differs per split. A source of
    files must give the splits disjoint files (`fusionseg.data.io.split_paths`). The datamodule also
    passes its ``eds_fraction`` (share of pixels measured; as ``point_fraction`` to a source naming that;
    for the training split a pair ``[lo, hi]`` when ``data.train_eds_fraction`` is a range) and ``sampler``
    (point sampler name) to sources whose constructor names them, and nothing else. Indices run over
    ``range(len(source))`` only.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


class PointEncoder(nn.Module):
    """Point features ``(N, in_dim)`` -> ``(N, out_dim)``; subclasses set ``out_dim`` and implement `encode`.

    Constructed with ``in_dim`` (width of ``Sample.point_features``, from the data) plus the domain's
    encoder context (`DomainMeta.encoder_context`, e.g. a spectrum calibration) and its own kwargs;
    an encoder takes only the context keys it names. `fit` sees the training split's point features
    once, before training (PCA, standardisation); the default does nothing. Outside `fit`, each point is encoded on
    its own (no statistics across the points of a call): `segment` encodes a field's points once and then tiles
    the encoded field (`FusionSegModule.points_encoded`).
    """

    out_dim: int

    def fit(self, features: Tensor) -> PointEncoder:
        return self

    def encode(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, features: Tensor) -> Tensor:
        return self.encode(features)


@runtime_checkable
class GraphBuilder(Protocol):
    """``builder(sample) -> SegGraph``: a PyG ``HeteroData`` with image nodes (``image_node_type``) and
    ``point`` nodes, the `fusionseg.graphs.schema` edge types and ``pixel_to_node`` for decoding.

    ``image_feature_dim(image_channels)`` gives the width of the image nodes' features.
    `fusionseg.graphs.base.GraphBuilder` implements the schema; subclass it and override ``image_nodes``.
    """

    image_node_type: str

    def image_feature_dim(self, image_channels: int) -> int: ...

    def __call__(self, sample: Sample) -> HeteroData: ...


@runtime_checkable
class Backbone(Protocol):
    """Homogeneous message passing: ``backbone(x (M, in), edge_index (2, E), edge_attr (E, A) | None) -> (M, out)``.

    Constructed as ``Backbone(in_channels, hidden_channels, num_layers, out_channels=None, **backbone_kwargs)``
    (the fusion adds ``edge_dim=1``); ``out_channels`` (int attribute) is the output width. Every fusion
    builds its backbones through this one signature, ``hetero`` once per edge type
    (`torch_geometric.nn.to_hetero`), so edge types must share ``in_channels``. Capability flags, read by
    the fusions: ``supports_edge_attr`` (False: ``edge_attr`` is not passed) and ``grid_native`` (True:
    ``forward_grid(x, graph)`` runs on the pixel lattice instead and the backbone cannot serve ``hetero``
    or ``early``).
    """

    out_channels: int
    supports_edge_attr: bool

    def __call__(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor: ...


PointLabeller = Callable[["Sample"], "Sample"]
"""Hook: a sample whose ``point_target`` is re-made from its point features (evaluation splits only),
e.g. SEM's ``identified``: each spectrum's best library mineral, what an instrument knows."""

Command = Callable[[list[str]], int]
"""Hook: ``fusionseg NAME ARGS...`` calls ``command(ARGS)`` and exits with its status; the first line of its
docstring is its line in ``fusionseg --help``."""


__all__ = [
    "Backbone",
    "Command",
    "ContractError",
    "DataSource",
    "DomainMeta",
    "GraphBuilder",
    "PointEncoder",
    "PointLabeller",
]
