"""fusionseg: segment a dense image from sparse point measurements with graph neural networks."""

from fusionseg.sample import IGNORE_INDEX, Sample, SampleError, SampleMeta

__version__ = "0.1.0"
__all__ = ["IGNORE_INDEX", "Sample", "SampleError", "SampleMeta", "__version__"]
