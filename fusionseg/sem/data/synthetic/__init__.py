"""Built-in SEM simulator: mineral library, rock textures, BSE and EDS physics (see DESIGN.md)."""

from fusionseg.sem.data.synthetic.field import SyntheticField, render_bse, simulate_field
from fusionseg.sem.data.synthetic.rocks import ROCKS, RockType, get_rock, register_rock, rock_names
from fusionseg.sem.data.synthetic.source import SyntheticSEMSource, save_preview, simulate_to_folder
from fusionseg.sem.minerals import (
    Mineral,
    SimulationError,
    add_minerals,
    class_index,
    class_names,
    get_mineral,
    library,
)
from fusionseg.sem.physics import SpectrumModel, characteristic_lines, fwhm_ev, reference_spectra

__all__ = [
    "ROCKS",
    "Mineral",
    "RockType",
    "SimulationError",
    "SpectrumModel",
    "SyntheticField",
    "SyntheticSEMSource",
    "add_minerals",
    "characteristic_lines",
    "class_index",
    "class_names",
    "fwhm_ev",
    "get_mineral",
    "get_rock",
    "library",
    "reference_spectra",
    "register_rock",
    "render_bse",
    "rock_names",
    "save_preview",
    "simulate_field",
    "simulate_to_folder",
]
