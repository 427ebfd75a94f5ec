"""A small 1D CNN over the (rebinned) spectrum, trained end to end with the GNN."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusionseg.registry import POINT_ENCODERS
from fusionseg.sem.encoders.base import EncoderError, Normalise, Rebinned
from fusionseg.sem.meta import EnergyAxis


@POINT_ENCODERS.register("learned", "cnn")
class LearnedEncoder(Rebinned):
    """Conv1d stack (stride 2 each) -> adaptive average pool -> Linear to ``out_dim``.

    Spectra are rebinned to a fixed ``bin_ev`` grid (calibration-independent weights), normalised
    (default Hellinger, scale-free), and multiplied by ``input_scale``: 1/RMS of the training
    inputs after `fit`, sqrt(num_bins) before (the RMS of a flat Hellinger spectrum).
    """

    def __init__(
        self,
        energy_axis: EnergyAxis | dict | None = None,
        beam_energy_kev: float = 20.0,
        out_dim: int = 16,
        channels: tuple[int, ...] = (8, 16, 16),
        kernel_size: int = 7,
        pooled_bins: int = 32,
        normalise: Normalise = "hellinger",
        bin_ev: float = 20.0,
        min_energy_ev: float = 100.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(energy_axis, beam_energy_kev, normalise, min_energy_ev, bin_ev)
        if out_dim <= 0 or not channels or kernel_size < 1 or pooled_bins < 1:
            raise EncoderError(
                f"learned encoder needs out_dim > 0, non-empty channels, kernel_size >= 1 and pooled_bins >= 1; "
                f"got out_dim={out_dim}, channels={channels}, kernel_size={kernel_size}, pooled_bins={pooled_bins}."
            )
        self.out_dim = int(out_dim)
        layers: list[nn.Module] = []
        width = 1
        for c in channels:
            layers += [nn.Conv1d(width, c, kernel_size, stride=2, padding=kernel_size // 2), nn.GELU()]
            width = c
        self.conv = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(pooled_bins), nn.Flatten())
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(width * pooled_bins, self.out_dim))
        self.register_buffer("input_scale", torch.tensor(float(self.num_bins) ** 0.5))

    @torch.no_grad()
    def fit(self, spectra: Tensor) -> LearnedEncoder:
        """Set ``input_scale`` to 1 / RMS of the normalised training spectra."""
        x = self.rebinned(self.check(spectra))
        rms = x.pow(2).mean().sqrt()
        if rms > 0:
            self.input_scale.fill_(1.0 / float(rms))
        return self

    def encode(self, spectra: Tensor) -> Tensor:
        x = self.rebinned(spectra) * self.input_scale
        return self.proj(self.conv(x[:, None]))
