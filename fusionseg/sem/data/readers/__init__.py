"""Readers of real SEM data: vendor EDS files (RosettaSciIO), plain folders, the paper's layout.

Every reader returns a `Sample` with the BSE image normalised to [0, 1], the calibration
(`EnergyAxis` in eV, beam energy in keV, pixel size in µm) from the file, and either

* measured points (``point_coords`` (N, 2) (row, col) pixels, ``point_features`` (N, C) counts), or
* a dense spectrum image kept in ``meta.domain.dense_spectra`` ((H, W, C) counts: numpy, or a lazy
  dask array above `LAZY_MIN_BYTES` when the RosettaSciIO reader takes ``lazy=True``) with no points
  yet: `fusionseg.sem.segment.sparse_acquisition` simulates a sparse acquisition from it.

``meta.domain`` (`SemMeta`) also holds ``measured_mask`` ((H, W) bool, pixels with a non-zero spectrum),
``nav_axes`` (the navigation axes as RosettaSciIO dicts), the EDS signal's metadata and ``source_path``.

Supported inputs (`read_input`):

* any file RosettaSciIO reads with an EDS signal: Bruker ``.bcf``, EDAX ``.spd``, JEOL, ``.hspy``
  (needs h5py), ... (plugin picked by extension); the BSE image from the same file (picked by
  title) or a separate TIFF/PNG (``image=``);
* a folder: an image (``bse.png``/``bse.tif``/``image.*``) plus ``eds.npz`` (``coords`` (N, 2)
  (row, col) or ``x``/``y``, ``spectra`` (N, C), or a dense ``spectra`` (H, W, C); calibration keys
  ``offset_ev``, ``scale_ev``, ``beam_energy_kev``) or ``points.csv`` (columns ``x``, ``y`` in pixels and
  either ``spectrum`` = path of an EMSA ``.msa`` file or channel columns ``c0..cN``), and an optional
  ``phases.tif(f)`` target (integer phase ids), as in the code of Repka et al. (2025).

Rooms: `common` (errors, images, checks shared by all), `vendor` (RosettaSciIO files), `folders` (image +
eds.npz / points.csv), `sources` (`read_input`, the registered sources). Every public name is re-exported here.
"""

from fusionseg.sem.data.readers.common import (
    DEFAULT_BEAM_KEV,
    IMAGE_NAMES,
    IMAGE_SUFFIXES,
    ReaderError,
    check_cube,
    check_points,
    dense_sample,
    normalise_image,
    points_sample,
    read_image_file,
)
from fusionseg.sem.data.readers.folders import peek_folder_size, read_folder, read_target
from fusionseg.sem.data.readers.sources import EDSFileSource, FolderSource, read_input
from fusionseg.sem.data.readers.vendor import (
    BSE_TITLE_HINTS,
    LAZY_MIN_BYTES,
    READER_EXTRAS,
    beam_energy_from,
    energy_axis_from,
    missing_dependency_message,
    pick_image,
    pixel_size_from,
    read_signals,
    sample_from_signals,
)

__all__ = [
    "BSE_TITLE_HINTS",
    "DEFAULT_BEAM_KEV",
    "IMAGE_NAMES",
    "IMAGE_SUFFIXES",
    "LAZY_MIN_BYTES",
    "READER_EXTRAS",
    "EDSFileSource",
    "FolderSource",
    "ReaderError",
    "beam_energy_from",
    "check_cube",
    "check_points",
    "dense_sample",
    "energy_axis_from",
    "missing_dependency_message",
    "normalise_image",
    "peek_folder_size",
    "pick_image",
    "pixel_size_from",
    "points_sample",
    "read_folder",
    "read_image_file",
    "read_input",
    "read_signals",
    "read_target",
    "sample_from_signals",
]
