"""``residual`` head: a learned correction on top of a classic completion carried in the image features."""

from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.data import HeteroData

from fusionseg.graphs.schema import image_node_type
from fusionseg.models.heads import HeadError, mlp
from fusionseg.registry import HEADS


@HEADS.register("residual")
class ResidualHead(nn.Module):
    """``scale * x_img[:, base_channel:base_channel + K] + MLP(h)``: classic completion plus a learned residual.

    ``base_channel``: the image feature holding the classic completion (e.g. linear interpolation or
    the fast global smoother of the samples, in units of ``1 / scale``); ``scale`` turns it into target
    units (disparity px). The residual is in target units, unscaled: Adam moves weights by about the
    learning rate per step, and a scaled residual would move the output ``scale`` times as far.
    The last layer starts at zero, so an untrained model returns the classic
    completion exactly: its floor is the classic result, and training only adds what the classic misses.
    """

    def __init__(
        self, in_dim: int, num_outputs: int, base_channel: int, scale: float = 1.0, hidden: int | None = None
    ) -> None:
        super().__init__()
        if base_channel < 0 or scale <= 0:
            raise HeadError(f"residual head needs base_channel >= 0 and scale > 0, got {base_channel}, {scale}.")
        self.base_channel, self.scale, self.num_outputs = int(base_channel), float(scale), num_outputs
        self.net = mlp(in_dim, num_outputs, hidden, 0.0)
        last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor, graph: HeteroData) -> Tensor:
        feats = graph[image_node_type(graph)].x
        stop = self.base_channel + self.num_outputs
        if feats.shape[1] < stop:
            raise HeadError(
                f"residual head reads image features {self.base_channel}..{stop - 1} but the graph's image nodes "
                f"have {feats.shape[1]}; set head_kwargs.base_channel to the classic completion's channel."
            )
        return self.scale * feats[:, self.base_channel : stop] + self.net(x)


__all__ = ["ResidualHead"]
