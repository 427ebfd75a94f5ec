"""Models: GNN backbones, fusion modules, heads and learned propagations; registered in `BACKBONES`, `FUSIONS`,
`HEADS`, `PROPAGATIONS`."""

from fusionseg.models.backbones import Backbone, BackboneError
from fusionseg.models.fusion import Fusion, FusionError
from fusionseg.models.grid_cnn import GridCNN
from fusionseg.models.heads import HeadError
from fusionseg.models.learned_propagation import LearnedDiffusion

__all__ = ["Backbone", "BackboneError", "Fusion", "FusionError", "GridCNN", "HeadError", "LearnedDiffusion"]
