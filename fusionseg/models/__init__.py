"""Models: GNN backbones, fusion modules and heads; registered in `BACKBONES`, `FUSIONS`, `HEADS`."""

from fusionseg.models.backbones import Backbone, BackboneError
from fusionseg.models.fusion import Fusion, FusionError
from fusionseg.models.grid_cnn import GridCNN
from fusionseg.models.heads import HeadError

__all__ = ["Backbone", "BackboneError", "Fusion", "FusionError", "GridCNN", "HeadError"]
