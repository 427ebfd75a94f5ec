"""The ``sem-synthetic`` data source and the function behind ``fusionseg simulate``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fusionseg.data.samplers import draw_points
from fusionseg.registry import DATA_SOURCES, SAMPLERS
from fusionseg.sample import Sample
from fusionseg.sem.data.synthetic.field import SyntheticField, simulate_field
from fusionseg.sem.data.synthetic.rocks import get_rock
from fusionseg.sem.meta import EnergyAxis, sem_meta
from fusionseg.sem.minerals import SimulationError, class_names, library
from fusionseg.sem.physics import SpectrumModel, element_peaks


def n_points_for(height: int, width: int, eds_fraction: float) -> int:
    """N = max(1, round(eds_fraction * H * W)); raises for a fraction outside (0, 1]."""
    if not np.isfinite(eds_fraction) or not 0 < eds_fraction <= 1:
        raise SimulationError(f"eds_fraction must be in (0, 1] (got {eds_fraction}); 0.01 measures 1 % of pixels.")
    return max(1, round(eds_fraction * height * width))


def _fraction_range(eds_fraction: float | Sequence[float]) -> tuple[float, float]:
    """(lo, hi) from a fraction or a pair; each checked to lie in (0, 1]."""
    pair = (eds_fraction, eds_fraction) if np.isscalar(eds_fraction) else tuple(eds_fraction)
    if len(pair) != 2 or pair[0] > pair[1]:
        raise SimulationError(f"eds_fraction must be a number or a pair (lo, hi) with lo <= hi, got {eds_fraction!r}.")
    for f in pair:
        n_points_for(1, 1, float(f))  # range check with the usual message
    return float(pair[0]), float(pair[1])


@DATA_SOURCES.register("sem-synthetic", "synthetic")
class SyntheticSEMSource:
    """Random-access simulated SEM fields: ``src[i] -> Sample``, deterministic in (seed, i).

    Field i is of rock ``rocks[i % len(rocks)]``, ``size`` x ``size`` px (or height x width) at
    ``pixel_size_um`` µm/px, with EDS spectra (raw counts) at ``round(eds_fraction * H * W)``
    points drawn by the registered ``sampler``; a pair ``eds_fraction=(lo, hi)`` draws each field's
    fraction log-uniformly in [lo, hi] (train one model for any EDS budget). ``src.field(i)``
    returns the `SyntheticField` (labels, BSE, ``spectra_at``, ``dense_spectra`` for the oracle on small fields).
    ``bse_noise_scale`` multiplies each field's BSE noise; a pair draws it log-uniformly per field (training
    that covers quieter detectors than the simulator's default, e.g. real instruments' slow scans).
    ``mineral_shuffle``: the share of fields whose rock keeps its texture but has its minerals (not epoxy or
    pores) replaced by others drawn from the whole library (training for assemblages no rock recipe has,
    as on a real section whose minerals the model never saw together). ``sampler`` a list: each field's points
    are placed by one of them, drawn per field (training for every placement a user may choose).
    """

    def __init__(
        self,
        num_fields: int = 64,
        size: int = 128,
        rocks: str | Sequence[str] = ("granite",),
        eds_fraction: float | Sequence[float] = 0.01,
        sampler: str | Sequence[str] = "random",
        counts_per_spectrum: float = 1000.0,
        beam_energy_kev: float = 20.0,
        energy_axis: EnergyAxis | None = None,
        seed: int = 0,
        fwhm_mn_ka_ev: float = 130.0,
        pixel_size_um: float = 1.5,
        height: int | None = None,
        width: int | None = None,
        bse_noise_scale: float | Sequence[float] = 1.0,
        mineral_shuffle: float = 0.0,
        split: str | None = None,
    ) -> None:
        """``split`` is accepted for the source contract; splits differ by ``seed`` (the datamodule's per split)."""
        self.height, self.width = int(height or size), int(width or size)
        if int(num_fields) < 1:
            raise SimulationError(f"num_fields must be >= 1 (got {num_fields}).")
        if self.height < 1 or self.width < 1:
            raise SimulationError(f"Field size must be >= 1 px (got {self.height}x{self.width}); try size=128.")
        self.num_fields = int(num_fields)
        self.rocks = (rocks,) if isinstance(rocks, str) else tuple(rocks)
        if not self.rocks:
            raise SimulationError("rocks must name at least one rock type, e.g. ('granite',).")
        self.rock_types = [get_rock(r) for r in self.rocks]
        noise = (bse_noise_scale,) * 2 if np.isscalar(bse_noise_scale) else tuple(bse_noise_scale)
        if len(noise) != 2 or not 0 < noise[0] <= noise[1] or not np.isfinite(noise[1]):
            raise SimulationError(
                f"bse_noise_scale must be a factor > 0 or a pair (lo, hi) with 0 < lo <= hi, got {bse_noise_scale!r}; "
                "e.g. [0.2, 1.0] covers quiet to noisy detectors."
            )
        self.noise_range = (float(noise[0]), float(noise[1]))
        self.fraction_range = _fraction_range(eds_fraction)
        self.eds_fraction = float(np.sqrt(self.fraction_range[0] * self.fraction_range[1]))  # geometric centre
        self.n_points = n_points_for(self.height, self.width, self.eds_fraction)
        names = (sampler,) if isinstance(sampler, str) else tuple(sampler)
        if not names:
            raise SimulationError("sampler must name a point sampler or a list of them, e.g. 'random'.")
        self.samplers = [SAMPLERS.create(name) for name in names]
        self.sampler = self.samplers[0]
        self.seed = int(seed)
        self.pixel_size_um = float(pixel_size_um)
        self.spectra = SpectrumModel(
            class_names(), energy_axis or EnergyAxis(), beam_energy_kev, fwhm_mn_ka_ev, counts_per_spectrum
        )
        for rock in self.rock_types:  # fail now, not at item 37, when a mineral cannot be excited
            self.spectra.check([class_names().index(m) for m in rock.minerals()])
        if not 0.0 <= float(mineral_shuffle) <= 1.0:
            raise SimulationError(f"mineral_shuffle is a share of fields in [0, 1], got {mineral_shuffle!r}.")
        self.mineral_shuffle = float(mineral_shuffle)
        keep = {"epoxy"}  # a mount's resin stays resin; pores (void) stay pores
        pool = [m.name for m in library() if not m.is_void and m.name not in keep]
        self.shuffle_pool = pool if self.mineral_shuffle else []
        self.spectra.check([class_names().index(m) for m in self.shuffle_pool])

    def __len__(self) -> int:
        return self.num_fields

    def _index(self, index: int) -> int:
        i = int(index) + (self.num_fields if int(index) < 0 else 0)
        if not 0 <= i < self.num_fields:
            raise IndexError(f"Field index {index} is out of range for {self.num_fields} fields.")
        return i

    def points_of(self, index: int) -> int:
        """Number of measured points of field ``index`` (fixed, or drawn for a fraction range)."""
        lo, hi = self.fraction_range
        if lo == hi:
            return self.n_points
        u = np.random.default_rng([self.seed, self._index(index), 8]).uniform()
        return n_points_for(self.height, self.width, float(lo * (hi / lo) ** u))

    def field(self, index: int) -> SyntheticField:
        """The simulated field ``index`` (phase map, BSE, spectra on demand)."""
        i = self._index(index)
        return simulate_field(
            self.rock_types[i % len(self.rock_types)],
            self.height,
            self.width,
            seed=np.random.SeedSequence([self.seed, i]),
            pixel_size_um=self.pixel_size_um,
            spectra=self.spectra,
            bse_noise_scale=self.noise_scale_of(i),
            minerals=self.minerals_of(i),
        )

    def minerals_of(self, index: int) -> dict[str, str] | None:
        """Field ``index``'s mineral replacements (`mineral_shuffle`), or None: the rock as its recipe says."""
        i = self._index(index)
        rng = np.random.default_rng([self.seed, i, 10])
        if not self.mineral_shuffle or rng.uniform() >= self.mineral_shuffle:
            return None
        own = [m for m in self.rock_types[i % len(self.rock_types)].minerals() if m in self.shuffle_pool]
        return dict(zip(own, rng.choice(self.shuffle_pool, len(own), replace=False).tolist(), strict=True))

    def sampler_of(self, index: int) -> Callable[..., np.ndarray]:
        """The point sampler of field ``index`` (the only one, or drawn per field from ``sampler``'s list)."""
        if len(self.samplers) == 1:
            return self.sampler
        return self.samplers[np.random.default_rng([self.seed, self._index(index), 11]).integers(len(self.samplers))]

    def noise_scale_of(self, index: int) -> float:
        """BSE noise factor of field ``index`` (fixed, or drawn log-uniformly for a range)."""
        lo, hi = self.noise_range
        if lo == hi:
            return lo
        u = np.random.default_rng([self.seed, self._index(index), 9]).uniform()
        return float(lo * (hi / lo) ** u)

    def __getitem__(self, index: int) -> Sample:
        i = self._index(index)
        fld = self.field(i)
        rng = np.random.default_rng([self.seed, i, 7])
        coords = draw_points(self.sampler_of(i), self.height, self.width, self.points_of(i), rng, image=fld.bse)
        return fld.to_sample(coords, fld.spectra_at(coords, rng), name=f"{fld.rock}-s{self.seed}-{i:05d}")


def simulate_to_folder(
    rock: str,
    n: int,
    size: int,
    out: Path,
    seed: int = 0,
    eds_fraction: float = 0.01,
    preview: bool = True,
) -> Path:
    """Write ``n`` simulated ``size``² fields of ``rock`` as a sample folder (see `fusionseg.data.io`).

    Also writes ``preview.png`` (BSE, phase map with legend, a few spectra with element labels)
    when ``preview``. Returns the folder.
    """
    from fusionseg.data.io import write_dataset

    src = SyntheticSEMSource(num_fields=n, size=size, rocks=(rock,), eds_fraction=eds_fraction, seed=seed)
    out = Path(out)
    write_dataset((src[i] for i in range(len(src))), out)
    if preview:
        save_preview(src[0], out / "preview.png")
    return out


def save_preview(sample: Sample, path: Path, n_spectra: int = 3) -> Path:
    """PNG with the BSE image, the phase map with a legend and a few spectra labelled by element."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    names = sample.meta.class_names
    target = sample.target.numpy()
    present = np.unique(target)
    cmap = ListedColormap(plt.get_cmap("tab20")(np.arange(len(present)) % 20))
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [1, 1, 1.4]})
    axes[0].imshow(sample.image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"BSE ({sample.meta.name})")
    axes[1].imshow(
        np.searchsorted(present, target), cmap=cmap, vmin=-0.5, vmax=len(present) - 0.5, interpolation="nearest"
    )
    pts = sample.point_coords.numpy()
    axes[1].scatter(pts[:, 1], pts[:, 0], s=2, c="k")
    axes[1].set_title("phase map + EDS points")
    axes[1].legend(
        handles=[Patch(color=cmap(j), label=names[k]) for j, k in enumerate(present)],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    _plot_spectra(axes[2], sample, n_spectra)
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _savefig_atomic(fig, Path(path))


def _plot_spectra(ax, sample: Sample, n_spectra: int) -> None:
    axis, beam_kev = sem_meta(sample.meta).energy_axis, sem_meta(sample.meta).beam_energy_kev
    e_kev = axis.energies_ev().numpy() / 1000.0
    pt = sample.point_target.numpy()
    classes, first = np.unique(pt, return_index=True)
    order = np.argsort(-np.bincount(pt)[classes])[:n_spectra]
    for j in order:
        k, i = int(classes[j]), int(first[j])
        name = sample.meta.class_names[k]
        spec = sample.point_features[i].numpy()
        ax.plot(e_kev, spec, lw=0.8, label=name)
        if name == "pore":
            continue
        for label, energy in element_peaks(name, beam_kev):
            ch = int(round(axis.channel(energy)))
            if 0 <= ch < len(spec):
                ax.annotate(
                    label.split()[0],
                    (energy / 1000.0, spec[max(ch - 3, 0) : ch + 4].max()),
                    fontsize=7,
                    ha="center",
                    va="bottom",
                )
    ax.set_xlim(0, min(e_kev[-1], beam_kev))
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("counts")
    ax.set_title("EDS spectra at points")
    ax.legend(fontsize=8)


def _savefig_atomic(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from fusionseg.export.safe_io import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
