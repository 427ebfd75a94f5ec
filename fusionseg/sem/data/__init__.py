"""SEM data: vendor readers and sparse acquisition, the simulator; importing registers their sources."""

from fusionseg.sem.data import readers, synthetic
from fusionseg.sem.data.synthetic import SyntheticSEMSource, class_names, simulate_to_folder

__all__ = ["SyntheticSEMSource", "class_names", "readers", "simulate_to_folder", "synthetic"]
