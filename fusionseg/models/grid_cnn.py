"""Message passing on a full pixel grid, run as convolution.

On a regular 8-connected pixel grid, one round of message passing with neighbour-position
specific weights *is* a 3x3 convolution; a dilated 3x3 convolution is message passing over the
grid with dilation d. Convolution kernels (oneDNN on CPU, cuDNN on GPU) run this one to two
orders of magnitude faster than scatter-based GNN layers, so the ``cnn`` backbone is the fast
image branch for ``grid`` graphs (stride 1). Other graphs (knn, superpixel) use the GNN backbones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from fusionseg.errors import FusionSegError
from fusionseg.registry import BACKBONES


class GridLayoutError(FusionSegError):
    """The image nodes do not form a full row-major pixel grid (use a GNN backbone instead)."""


def _norm(kind: str | None, channels: int) -> nn.Module:
    if kind in (None, "none"):
        return nn.Identity()
    if kind in ("batch", "batch_norm"):
        return nn.BatchNorm2d(channels)
    if kind in ("group", "group_norm"):
        return nn.GroupNorm(min(8, channels), channels)
    if kind in ("instance", "instance_norm"):
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"norm must be one of None, 'batch', 'group', 'instance'; got {kind!r}.")


@BACKBONES.register("cnn", "grid-cnn")
class GridCNN(nn.Module):
    """Residual stack of dilated 3x3 convolutions over the pixel grid.

    Args:
        in_channels / hidden_channels / out_channels: feature widths (out defaults to hidden).
        num_layers: number of 3x3 convolutions after the 1x1 input projection.
        dilations: dilation per layer, cycled (receptive field grows to 1 + 2 * sum(dilations) px).
        norm: ``group`` (default; batch-size independent), ``batch``, ``instance`` or None.
        dropout: 2D dropout after each layer.
    """

    supports_edge_attr = False
    grid_native = True

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_layers: int = 4,
        out_channels: int | None = None,
        dilations: Sequence[int] = (1, 2, 4, 8),
        norm: str | None = "group",
        dropout: float = 0.0,
        **unused: object,
    ) -> None:
        super().__init__()
        if num_layers < 1 or not dilations or min(dilations) < 1:
            raise ValueError(f"cnn backbone needs num_layers >= 1 and dilations >= 1, got {num_layers}, {dilations}.")
        self.out_channels = out_channels or hidden_channels
        self.inp = nn.Conv2d(in_channels, hidden_channels, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(hidden_channels, hidden_channels, 3, padding=d, dilation=d),  # zero padding: fused, no copy
                _norm(norm, hidden_channels),
                nn.GELU(),
                nn.Dropout2d(dropout) if dropout else nn.Identity(),
            )
            for d in (dilations[i % len(dilations)] for i in range(num_layers))
        )
        self.out = nn.Conv2d(hidden_channels, self.out_channels, 1) if out_channels else nn.Identity()

    def forward_image(self, image: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, out, H, W), channels-last memory (oneDNN's fast layout on CPU)."""
        h = self.inp(image.contiguous(memory_format=torch.channels_last))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)

    def forward_grid(self, x: Tensor, graph: HeteroData) -> Tensor:
        """Node features (sum H*W, C) of row-major pixel grids -> (sum H*W, out)."""
        sizes = graph.image_size.view(-1, 2).tolist()
        if sum(h * w for h, w in sizes) != x.shape[0]:
            raise GridLayoutError(
                f"the cnn backbone needs one image node per pixel ({sum(h * w for h, w in sizes)}), got {x.shape[0]}: "
                "use graph_builder 'grid' with stride 1, or a GNN backbone (sage, gcn, gat, ...)."
            )
        # Node-major (H*W, C) rows *are* a channels-last (C, H, W) image: views, no transposing copies.
        if len({tuple(hw) for hw in sizes}) == 1:  # equal fields: one batched convolution
            (h, w), b = sizes[0], len(sizes)
            out = self.forward_image(x.reshape(b, h, w, -1).permute(0, 3, 1, 2))
            return out.permute(0, 2, 3, 1).reshape(b * h * w, -1)
        outputs, start = [], 0
        for h, w in sizes:  # fields of different sizes cannot share one tensor; B is small
            block = x[start : start + h * w].reshape(1, h, w, -1).permute(0, 3, 1, 2)
            outputs.append(self.forward_image(block).permute(0, 2, 3, 1).reshape(h * w, -1))
            start += h * w
        return torch.cat(outputs)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        raise GridLayoutError(
            "the cnn backbone runs on the pixel lattice, not on an edge list: it is used through a fusion "
            "module's image branch with a 'grid' graph (stride 1)."
        )
