"""Spectrum encoders: raw spectra (N, C) counts -> features (N, out_dim); registered in `POINT_ENCODERS`."""

from fusionseg.sem.encoders.base import EncoderError, SpectrumEncoder, detector_fwhm_ev
from fusionseg.sem.encoders.learned import LearnedEncoder
from fusionseg.sem.encoders.library import LibraryPosterior
from fusionseg.sem.encoders.spectral import DEFAULT_ELEMENTS, ElementWindows, PCAEncoder

__all__ = [
    "DEFAULT_ELEMENTS",
    "ElementWindows",
    "EncoderError",
    "LearnedEncoder",
    "LibraryPosterior",
    "PCAEncoder",
    "SpectrumEncoder",
    "detector_fwhm_ev",
]
