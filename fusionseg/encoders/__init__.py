"""Point encoders: raw spectra (N, C) counts -> features (N, out_dim); registered in `POINT_ENCODERS`."""

from fusionseg.encoders.base import EncoderError, SpectrumEncoder, detector_fwhm_ev
from fusionseg.encoders.learned import LearnedEncoder
from fusionseg.encoders.library import LibraryPosterior
from fusionseg.encoders.spectral import DEFAULT_ELEMENTS, ElementWindows, IdentityEncoder, PCAEncoder

__all__ = [
    "DEFAULT_ELEMENTS",
    "ElementWindows",
    "EncoderError",
    "IdentityEncoder",
    "LearnedEncoder",
    "LibraryPosterior",
    "PCAEncoder",
    "SpectrumEncoder",
    "detector_fwhm_ev",
]
