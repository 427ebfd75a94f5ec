"""Data sources (simulator, sample folders, vendor readers) and point samplers; importing registers them."""

from fusionseg.data import io, readers, samplers, synthetic
from fusionseg.data.io import SampleFolder, load_sample, save_sample, write_dataset
from fusionseg.data.synthetic import SyntheticSEMSource, class_names, simulate_to_folder

__all__ = [
    "SampleFolder",
    "SyntheticSEMSource",
    "class_names",
    "io",
    "load_sample",
    "readers",
    "samplers",
    "save_sample",
    "simulate_to_folder",
    "synthetic",
    "write_dataset",
]
