"""A third-party package adding a graph builder and a backbone to fusionseg via entry points."""

from torch import nn

from fusionseg.registry import BACKBONES, GRAPH_BUILDERS


@GRAPH_BUILDERS.register("toy-builder")
class ToyBuilder:
    image_node_type = "pixel"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale


@BACKBONES.register("toy-mlp")
class ToyMLP(nn.Module):
    supports_edge_attr = False

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int = 1, **kwargs) -> None:
        super().__init__()
        self.lin = nn.Linear(in_channels, hidden_channels)

    def forward(self, x, edge_index, edge_attr=None):
        return self.lin(x)
