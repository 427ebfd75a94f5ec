"""Domain-free data: the sample-folder source, point samplers and the datamodule; importing registers them."""

from fusionseg.data import io, samplers
from fusionseg.data.io import SampleFolder, load_sample, save_sample, write_dataset

__all__ = ["SampleFolder", "io", "load_sample", "samplers", "save_sample", "write_dataset"]
