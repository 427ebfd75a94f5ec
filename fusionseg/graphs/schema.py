"""The graph schema every builder produces and every model consumes.

A `SegGraph` is a PyG ``HeteroData`` with

node types
    ``pixel`` (one node per pixel, or per strided pixel) **or** ``region`` (superpixels):
        ``x``   (M, F) float image features,  ``pos`` (M, 2) float (row, col) in pixels.
    ``point`` (the measured spots):
        ``x``   (N, D) float point features (raw spectra from the builder, encoded later),
        ``pos`` (N, 2) float (row, col) in pixels, optional ``y`` (N,) long class ids.
edge types (``edge_index`` (2, E) long, ``edge_attr`` (E, A) float, column 0 = distance in pixels)
    (img, "near", img), ("point", "near", "point"), ("point", "to", img), (img, "to", "point")
    where img is the image node type.
graph-level attributes
    ``pixel_to_node`` (H*W,) long: image node of each pixel (row-major); decodes node outputs
        to a dense map. Identity for a full pixel grid. Offset correctly when batched.
    ``image_size``    (1, 2) long: (H, W).
    ``pixel_y``       optional (H*W,) long dense target (``IGNORE_INDEX`` = unlabelled).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

PIXEL, REGION, POINT = "pixel", "region", "point"
NEAR, TO = "near", "to"


class SegGraph(HeteroData):
    """``HeteroData`` that knows how to batch ``pixel_to_node`` (an index into image nodes)."""

    def __inc__(self, key: str, value: Any, store: Any = None, *args: Any, **kwargs: Any) -> Any:
        if key == "pixel_to_node":
            return self[image_node_type(self)].num_nodes
        return super().__inc__(key, value, store, *args, **kwargs)

    def __cat_dim__(self, key: str, value: Any, store: Any = None, *args: Any, **kwargs: Any) -> Any:
        if key in ("pixel_to_node", "pixel_y", "image_size"):
            return 0
        return super().__cat_dim__(key, value, store, *args, **kwargs)


def image_node_type(data: HeteroData) -> str:
    """``"region"`` for superpixel graphs, else ``"pixel"``."""
    return REGION if REGION in data.node_types else PIXEL


def edge_types(img: str) -> dict[str, tuple[str, str, str]]:
    """The four edge types of the schema for image node type ``img``."""
    return {
        "image": (img, NEAR, img),
        "point": (POINT, NEAR, POINT),
        "point_to_image": (POINT, TO, img),
        "image_to_point": (img, TO, POINT),
    }


def pixel_batch(data: HeteroData) -> Tensor:
    """Graph id of every pixel of a (batched) graph, shape (sum H*W,)."""
    sizes = data.image_size.view(-1, 2)
    counts = sizes[:, 0] * sizes[:, 1]
    return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)


def decode_to_pixels(node_values: Tensor, data: HeteroData) -> Tensor:
    """Per-pixel values (sum H*W, ...) from per-image-node values (M, ...)."""
    return node_values[data.pixel_to_node]
