"""Graph builders: `Sample` -> `SegGraph` (see `fusionseg.graphs.schema`).

Importing this package registers the builders ``grid``, ``knn`` and ``superpixel`` in
``fusionseg.registry.GRAPH_BUILDERS``.
"""

from fusionseg.graphs.base import GraphBuilder, ImageNodes
from fusionseg.graphs.geometry import GraphBuildError, clear_geometry_cache, grid_geometry
from fusionseg.graphs.grid import GridGraphBuilder
from fusionseg.graphs.homogeneous import to_homogeneous
from fusionseg.graphs.knn import KNNGraphBuilder
from fusionseg.graphs.points import point_point_edges
from fusionseg.graphs.schema import SegGraph, decode_to_pixels, image_node_type, pixel_batch
from fusionseg.graphs.superpixel import SuperpixelGraphBuilder

__all__ = [
    "GraphBuildError",
    "GraphBuilder",
    "GridGraphBuilder",
    "ImageNodes",
    "KNNGraphBuilder",
    "SegGraph",
    "SuperpixelGraphBuilder",
    "clear_geometry_cache",
    "decode_to_pixels",
    "grid_geometry",
    "image_node_type",
    "pixel_batch",
    "point_point_edges",
    "to_homogeneous",
]
