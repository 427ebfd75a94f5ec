"""Physics-based point encoder: the posterior over library minerals of each measured spectrum.

Reference spectra of the mineral library are simulated at the encoder's calibration, beam
energy and detector resolution; each spectrum is scored by its Poisson log-likelihood under
every reference (`fusionseg.sem.identify`), the same identification an instrument performs. The
features are the posterior probabilities, the fit quality of the best match and the total
counts, so a network only has to learn where a phase extends, not what a spectrum means.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fusionseg.registry import POINT_ENCODERS
from fusionseg.sem.encoders.base import EncoderError, SpectrumEncoder
from fusionseg.sem.identify import deviance_per_count, library_references, poisson_log_likelihood
from fusionseg.sem.meta import EnergyAxis


@POINT_ENCODERS.register("library-posterior", "library")
class LibraryPosterior(SpectrumEncoder):
    """Spectra (N, C) -> [posterior over minerals (K) | log deviance per count | log10 total counts].

    Args:
        minerals: library entries to score (default: the built-in library; pores have no spectrum
            and get probability 0).
        fwhm_mn_ka_ev: detector resolution at Mn Ka (eV) for the references.
        temperature: divides the log-likelihoods; > 1 softens over-confident posteriors.
    """

    def __init__(
        self,
        energy_axis: EnergyAxis | dict | None = None,
        beam_energy_kev: float = 20.0,
        minerals: Sequence[str] | None = None,
        fwhm_mn_ka_ev: float = 130.0,
        temperature: float = 1.0,
    ) -> None:
        if temperature <= 0:
            raise EncoderError(f"temperature must be > 0, got {temperature}.")
        if minerals is None:
            from fusionseg.sem.minerals import class_names

            minerals = class_names()
        self.minerals = tuple(minerals)
        if not self.minerals:
            raise EncoderError("minerals is empty: name at least one library mineral.")
        self.fwhm_mn_ka_ev, self.temperature = float(fwhm_mn_ka_ev), float(temperature)
        self.out_dim = len(self.minerals) + 2
        super().__init__(energy_axis, beam_energy_kev, normalise="none")

    def set_energy_axis(self, energy_axis: EnergyAxis) -> None:
        super().set_energy_axis(energy_axis)
        refs, usable = library_references(self.minerals, energy_axis, self.beam_energy_kev, self.fwhm_mn_ka_ev)
        self.register_buffer("references", refs.float(), persistent=False)
        self.register_buffer("usable", usable, persistent=False)

    def encode(self, spectra: Tensor) -> Tensor:
        counts = spectra * self.valid_mask
        ll = poisson_log_likelihood(counts, self.references[self.usable], dtype=torch.float32)
        post = torch.zeros(len(counts), len(self.minerals), device=counts.device)
        post[:, self.usable] = (ll / self.temperature).softmax(1)
        total = counts.sum(1)
        deviance = deviance_per_count(counts, ll.max(1).values, dtype=torch.float32)
        fit = deviance.clamp_min(1e-6).log()[:, None] / 5  # scaled to about [-3, 1]
        level = total.clamp_min(1).log10()[:, None] / 4  # 10^4 counts -> 1
        return torch.cat([post, fit, level], 1)
