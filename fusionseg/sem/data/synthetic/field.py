"""One simulated SEM field: phase map, BSE image, and EDS spectra on demand.

BSE (per field, each parameter random within a realistic range): signal = offset + gain *
eta(mineral) * drift, where eta is Reuter's (1972) backscatter coefficient averaged by weight
fraction; polishing scratches darken thin lines; a Gaussian beam spot blurs the signal; shot
noise (std ~ sqrt(signal)) and read noise are added after the blur. The image is clipped to
[0, 1] and returned as (1, H, W) float32. EDS spectra are drawn only where asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from fusionseg.sample import Sample, SampleMeta
from fusionseg.sem.data.synthetic.microstructure import phase_map, smooth_noise
from fusionseg.sem.data.synthetic.rocks import RockType, get_rock
from fusionseg.sem.meta import SemMeta, Simulation
from fusionseg.sem.minerals import SimulationError, class_names, eta_table
from fusionseg.sem.physics import SpectrumModel

# Per-field BSE parameter ranges (image units: 1 = full scale).
BSE_RANGES = {
    "gain": (1.6, 2.2),  # contrast: image units per unit backscatter coefficient
    "offset": (-0.04, 0.03),  # brightness
    "blur_px": (0.4, 1.1),  # beam spot sigma
    "shot": (0.006, 0.011),  # variance per unit signal (dwell time / beam current)
    "read_noise": (0.003, 0.008),  # detector noise std
    "drift": (0.0, 0.06),  # relative brightness change over the scan
    "scratches": (0, 6),  # number of polishing scratches
}
MAX_DENSE_VALUES = 1 << 28  # dense cubes beyond ~1 GiB of float32 are refused


def render_bse(
    labels: np.ndarray, rng: np.random.Generator, noise_scale: float = 1.0
) -> tuple[np.ndarray, dict[str, float]]:
    """(H, W) float32 BSE image in [0, 1] of a phase map of global class ids, and the drawn parameters.

    ``noise_scale`` multiplies the shot + read noise std (e.g. 0.2 for a slow scan on a quiet detector).
    """
    h, w = labels.shape
    p = {k: float(rng.uniform(*v)) for k, v in BSE_RANGES.items()}
    p["scratches"] = int(p["scratches"])
    signal = eta_table().astype(np.float32)[labels] * np.float32(p["gain"])
    rows = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    slow = 0.3 * smooth_noise((h, w), max(h, w) / 2, rng)  # slow, smooth brightness variation
    signal *= 1.0 + np.float32(p["drift"]) * (rng.choice([-1.0, 1.0]) * rows + slow)
    _scratch(signal, p["scratches"], rng)
    signal = ndimage.gaussian_filter(signal, p["blur_px"], mode="nearest") + np.float32(p["offset"])
    noise = rng.standard_normal((h, w), dtype=np.float32)
    std = np.sqrt(np.float32(p["shot"]) * np.maximum(signal, 0) + np.float32(p["read_noise"] ** 2))
    std *= np.float32(noise_scale)
    p["noise_scale"] = float(noise_scale)
    return np.clip(signal + std * noise, 0.0, 1.0), p


def _scratch(signal: np.ndarray, n: int, rng: np.random.Generator) -> None:
    """Darken ``n`` straight polishing scratches (width 1-2 px, 3-12 % deeper), mostly parallel, in place."""
    if n == 0:
        return
    h, w = signal.shape
    base = rng.uniform(0, np.pi)
    rr = np.arange(h, dtype=np.float32)[:, None]
    cc = np.arange(w, dtype=np.float32)[None, :]
    for _ in range(n):  # a handful of scratches, each vectorised over the image
        theta = base + rng.normal(0, 0.15)
        c = rng.uniform(-0.2, 1.2) * (h * abs(np.cos(theta)) + w * abs(np.sin(theta)))
        along = rr * np.cos(theta) - cc * np.sin(theta)
        dist = np.abs(rr * np.sin(theta) + cc * np.cos(theta) - c)
        start = rng.uniform(-max(h, w), max(h, w))
        hit = (dist < rng.uniform(0.5, 1.2)) & (along > start) & (along < start + rng.uniform(0.3, 1.5) * max(h, w))
        signal[hit] *= np.float32(1.0 - rng.uniform(0.03, 0.12))


@dataclass
class SyntheticField:
    """A simulated field: ``labels`` (H, W) global class ids, ``bse`` (H, W) float32, spectra on demand."""

    labels: np.ndarray
    bse: np.ndarray
    rock: str
    pixel_size_um: float
    spectra: SpectrumModel
    seed: int
    bse_params: dict[str, float] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape

    def _rng(self, rng: np.random.Generator | None, stream: int) -> np.random.Generator:
        return rng if rng is not None else np.random.default_rng([self.seed, stream])

    def _pixel_ids(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise SimulationError(f"coords must be (N, 2) (row, col) pixels, got shape {coords.shape}.")
        ij = np.rint(coords).astype(np.int64)
        h, w = self.shape
        if len(ij) and (ij.min() < 0 or (ij[:, 0] >= h).any() or (ij[:, 1] >= w).any()):
            raise SimulationError(f"coords fall outside the {h}x{w} field; give (row, col) pixel indices.")
        return self.labels[ij[:, 0], ij[:, 1]]

    def spectra_at(self, coords: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, C) float32 Poisson counts at (row, col) pixel coordinates (nearest pixel)."""
        return self.spectra.sample(self._pixel_ids(coords), self._rng(rng, 1))

    def expected_spectra_at(self, coords: np.ndarray) -> np.ndarray:
        """(N, C) noise-free expected counts at (row, col) pixel coordinates."""
        return self.spectra.expected(self._pixel_ids(coords))

    def dense_spectra(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """(H, W, C) float32 counts at every pixel: the dense-EDS oracle, for small fields only."""
        h, w = self.shape
        if h * w * self.spectra.axis.size > MAX_DENSE_VALUES:
            raise SimulationError(
                f"A dense {h}x{w}x{self.spectra.axis.size} cube is too large; use spectra_at() on sampled points "
                "or a smaller field."
            )
        return self.spectra.sample(self.labels.ravel(), self._rng(rng, 2)).reshape(h, w, -1)

    def to_sample(self, coords: np.ndarray, spectra: np.ndarray | None = None, name: str = "") -> Sample:
        """A `Sample` with the BSE image, points at ``coords`` and their spectra (drawn if not given)."""
        coords = np.asarray(coords, dtype=np.float64)
        if spectra is None:
            spectra = self.spectra_at(coords)
        s = self.spectra
        meta = SampleMeta(
            class_names=class_names(),
            domain=SemMeta(
                energy_axis=s.axis,
                beam_energy_kev=s.beam_energy_kev,
                fwhm_mn_ka_ev=s.fwhm_mn_ka_ev,
                simulation=Simulation(self.rock, self.seed, s.counts, dict(self.bse_params)),
            ),
            pixel_size_um=self.pixel_size_um,
            name=name,
        )
        return Sample(
            image=self.bse[None],
            point_coords=coords,
            point_features=spectra,
            meta=meta,
            target=self.labels,
            point_target=self._pixel_ids(coords),
        )


def simulate_field(
    rock: str | RockType,
    height: int,
    width: int | None = None,
    *,
    seed: int | np.random.SeedSequence = 0,
    pixel_size_um: float = 1.5,
    spectra: SpectrumModel | None = None,
    bse_noise_scale: float = 1.0,
    minerals: Mapping[str, str] | None = None,
) -> SyntheticField:
    """Simulate one field of ``rock`` (height x width px at ``pixel_size_um`` µm/px); deterministic in ``seed``.

    ``bse_noise_scale``: factor on the BSE noise std (see `render_bse`). ``minerals``: the rock's minerals
    replaced by others (name -> name) after its texture is drawn: the same geometry, another assemblage.
    """
    rock = get_rock(rock)
    width = height if width is None else width
    if int(height) < 1 or int(width) < 1:
        raise SimulationError(f"Field size must be >= 1 px per side (got {height}x{width}).")
    if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise SimulationError(f"pixel_size_um must be > 0 µm (got {pixel_size_um}).")
    spectra = spectra or SpectrumModel(class_names())
    spectra.check([class_names().index(m) for m in rock.minerals()])
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    state = [int(x) for x in ss.generate_state(2)]  # pure function of the seed (spawn() would mutate ss)
    labels = phase_map(rock, (int(height), int(width)), pixel_size_um, np.random.default_rng([*state, 0]))
    if minerals:
        names = class_names()
        lut = np.arange(len(names))
        lut[[names.index(a) for a in minerals]] = [names.index(b) for b in minerals.values()]
        spectra.check(lut[np.unique(labels)])
        labels = lut[labels].astype(labels.dtype)
    bse, params = render_bse(labels, np.random.default_rng([*state, 1]), bse_noise_scale)
    return SyntheticField(labels, bse, rock.name, pixel_size_um, spectra, state[0], params)
