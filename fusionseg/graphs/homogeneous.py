"""`to_homogeneous`: the paper's single zero-padded graph from a (batched) `SegGraph`."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.utils import to_undirected

from fusionseg.graphs.schema import POINT, edge_types, image_node_type
from fusionseg.sample import IGNORE_INDEX


def _padded_features(xi: Tensor, xp: Tensor) -> Tensor:
    """[image feats | zeros(D)] over [zeros(F) | point feats], (M+N, F+D)."""
    (m, f), (n, d) = xi.shape, xp.shape
    x = xi.new_zeros(m + n, f + d, dtype=torch.promote_types(xi.dtype, xp.dtype))
    x[:m, :f] = xi
    x[m:, f:] = xp
    return x


def _labels(graph: HeteroData, img: str, m: int, n: int) -> Tensor | None:
    yi, yp = graph[img].get("y"), graph[POINT].get("y")
    if yi is None and yp is None:
        return None
    fill = torch.full((m + n,), IGNORE_INDEX, dtype=torch.long)
    if yi is not None:
        fill[:m] = yi
    if yp is not None:
        fill[m:] = yp
    return fill


def to_homogeneous(graph: HeteroData, point_height: float = 0.0) -> Data:
    """One graph: image nodes ``0..M-1`` first, then points ``M..M+N-1`` (Repka et al. 2025 layout).

    ``x`` (M+N, F+D) zero-padded; all four edge types merged and made undirected in ``edge_index``
    (sorted by source, duplicates merged), as the paper's code does (``to_undirected``): each pixel
    then also *receives* from its nearest point, not only sends to it; ``edge_attr`` = distance
    (E, 1) in pixels, with points ``point_height`` px above the image plane for the point<->image
    edges (the paper's code places them 5 px up, so a cross edge is never shorter than 5 px and its
    length alone tells attention it is one); ``pos``; ``node_type`` (0 image, 1 point); ``y`` when either node type
    has one (missing labels = ``IGNORE_INDEX``); ``num_image_nodes`` = M so that
    ``out[:data.num_image_nodes][data.pixel_to_node]`` is the dense per-pixel output. A batched
    `SegGraph` gives the image nodes of all graphs, then all points, plus ``batch``.
    Convert after batching: ``pixel_to_node`` of the result is not re-offset by PyG's collate.
    Hand-written because PyG's ``HeteroData.to_homogeneous`` drops features of unequal widths.
    """
    img = image_node_type(graph)
    xi, xp = graph[img].x, graph[POINT].x
    m, n = xi.shape[0], xp.shape[0]
    offset = {img: 0, POINT: m}
    index, attr = [], []
    for src, rel, dst in edge_types(img).values():
        store = graph[src, rel, dst]
        shift = torch.tensor([[offset[src]], [offset[dst]]])
        index.append(store.edge_index + shift)
        distance = store.edge_attr[:, :1].float()
        attr.append(distance if src == dst else torch.sqrt(distance**2 + point_height**2))
    edge_index, edge_attr = to_undirected(torch.cat(index, 1), torch.cat(attr, 0), num_nodes=m + n, reduce="mean")
    data = Data(
        x=_padded_features(xi, xp),
        edge_index=edge_index,
        edge_attr=edge_attr,
        pos=torch.cat([graph[img].pos, graph[POINT].pos.to(graph[img].pos.dtype)], 0),
        node_type=torch.cat([torch.zeros(m, dtype=torch.long), torch.ones(n, dtype=torch.long)]),
        num_image_nodes=m,
        pixel_to_node=graph.pixel_to_node,
        image_size=graph.image_size,
    )
    data.num_nodes = m + n
    y = _labels(graph, img, m, n)
    if y is not None:
        data.y = y
    if "pixel_y" in graph:
        data.pixel_y = graph.pixel_y
    if "batch" in graph[img]:
        data.batch = torch.cat([graph[img].batch, graph[POINT].batch])
    return data
