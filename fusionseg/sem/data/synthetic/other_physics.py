"""A second, deliberately independent EDS spectrum simulator ("other physics") for testing spectrum identification.

Nothing here comes from ``fusionseg.sem.physics``; every model differs from it on purpose. Energies are eV unless a
name says keV; mass thickness rho*z in g/cm^2; mass attenuation (mu/rho) in cm^2/g (``xraydb.mu_elam``, Elam tables).

* ionisation: Bethe cross-section Q = 6.51e-20 n b ln(U) / (U Ec^2) cm^2 (Goldstein et al. 2018, ch. 4; b of Powell
  1976: K 0.35, L 0.25, M taken as L) integrated along the electron path, n_ion = (C N0/A) int_Ec^E0 Q/|dE/d(rho s)| dE
  (24-point Gauss-Legendre in ln E), stopping power of Joy & Luo (1989) with Berger & Seltzer (1964) J.
* line yield: a family's n b (K 2 x 0.35, L 8 x 0.25, M 18 x 0.25) is shared among its subshells in proportion to the
  jump-ratio factor (1 - 1/r) of ``xraydb.xray_edges`` (the photo-absorption share, as in XRF fundamental parameters),
  times the subshell fluorescence yield omega and the xraydb line probability; K, L, M lines incl. Kb, Lb, Lg, Mb.
  Coster-Kronig transfer and secondary (matrix, characteristic or continuum) fluorescence are ignored.
* backscatter loss: R = 1 - eta W (1 - G(U0)) (Love, Cox & Scott 1978 as in Pouchou & Pichoir 1991, appendix 1),
  eta from the Zb = (sum C sqrt Z)^2 mean.
* absorption: Packwood & Brown (1981) Gaussian phi(rho z) = exp(-a^2 z^2) (g0 - (g0 - p0) exp(-b z)) integrated in
  closed form (erfcx); p0 of Reuter (1972), g0 of Packwood (1986), 2/a = Kanaya & Okayama (1972) X-ray range,
  b = 0.4 a Zbar^0.6 (after Bastin, Van Loo & Heijligers 1984).
* continuum: Small et al. (1987) N(E) = k Zbar (E0/E - 1)^1.1 photons/(eV electron) (``"kramers"``: exponent 1),
  generated with the phi(rho z) of an edge at E and absorbed like the lines; k = 2e-9 (thick-target efficiency
  1.1e-9 Z V, i.e. k = 2.2e-9); no R factor (the fitted form is per incident electron of a bulk target).
* detector: window (polymer: 300 nm polyimide + 40 nm Al on a 77 % open Si grid 380 um thick; beryllium: 8 um Be;
  none), 20 nm Si dead layer, 500 um Si crystal (photo-absorption), optional carbon coat on the specimen; Fano
  resolution FWHM^2 = noise^2 + (2.355)^2 F eps E (F = 0.115, eps = 3.64 eV); a low-energy incomplete-charge tail
  (exponential convolved with the Gaussian, decay length = FWHM); Si escape peaks at E - E(Si Ka) with the
  Reed & Ware (1972) escape probability; continuum escape and Gaussian broadening too; nothing below 100 eV.
* counts: independent Poisson draws per channel at ``counts x expected``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import xraydb
from scipy.special import erfc, erfcx, roots_legendre

from fusionseg.sem.meta import EnergyAxis

AVOGADRO = 6.02214076e23
BETHE_C = 6.51e-20  # cm^2 keV^2 (Bethe constant)
FAMILY_NB = {"K": 2 * 0.35, "L": 8 * 0.25, "M": 18 * 0.25}  # n b per family (Powell 1976 K and L b; L's b for M)
CONTINUUM_K = 2.0e-9  # photons per eV per electron per unit Z (Kramers-constant magnitude)
SMALL_X = 1.1  # continuum exponent of Small et al. (1987)
FANO = 0.115
PAIR_EV = 3.64  # eV per electron-hole pair in Si
MN_KA_EV = 5895.0  # intensity-weighted Mn Ka1/Ka2, where ``fwhm_mn_ev`` is specified
LOW_CUT_EV = 100.0  # nothing recorded below (noise threshold; Elam tables start here)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
LEVELS = ("K", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5")
# Detector window layers (formula, density g/cm^3, thickness cm) and the polymer window's Si support grid.
WINDOWS = {
    "polymer": (("C22H10N2O5", 1.42, 300e-7), ("Al", 2.70, 40e-7)),
    "beryllium": (("Be", 1.848, 8e-4),),
    "none": (),
}
GRID_OPEN, GRID_SI_CM = 0.77, 380e-4
DEAD_SI_CM, CRYSTAL_SI_CM, SI_DENSITY = 20e-7, 500e-4, 2.33
COATING_DENSITY = 2.0  # g/cm^3, evaporated carbon
_GL_X, _GL_W = roots_legendre(24)


@dataclass(frozen=True)
class Instrument:
    """SEM-EDS settings: beam (keV), resolution at Mn Ka (eV), calibration (eV), window, continuum model, geometry."""

    beam_kev: float = 15.0
    fwhm_mn_ev: float = 135.0
    channel_ev: float = 5.0
    offset_ev: float = 0.0
    channels: int = 4096
    window: str = "polymer"  # "polymer", "beryllium" (8 um Be) or "none" (windowless)
    continuum: str = "small"  # "small" (Small et al. 1987) or "kramers"
    takeoff_deg: float = 40.0
    tail: float = 0.02  # fraction of each peak in the low-energy incomplete-charge tail
    escape: bool = True  # Si escape peaks (E - 1.74 keV) for photons above the Si K edge
    coating_nm: float = 0.0  # carbon coat on the specimen (absorbs the emitted X-rays)

    def __post_init__(self) -> None:
        fano_mn = FWHM_PER_SIGMA * math.sqrt(FANO * PAIR_EV * MN_KA_EV)
        checks = [
            (0.1 < self.beam_kev <= 100.0, f"beam_kev must be in (0.1, 100] keV, got {self.beam_kev}"),
            (
                self.fwhm_mn_ev > fano_mn,
                f"fwhm_mn_ev must exceed the Fano limit {fano_mn:.1f} eV, not {self.fwhm_mn_ev}",
            ),
            (self.channel_ev > 0, f"channel_ev must be > 0 eV, got {self.channel_ev}"),
            (math.isfinite(self.offset_ev), f"offset_ev must be finite, got {self.offset_ev}"),
            (int(self.channels) == self.channels and self.channels > 0, f"channels must be > 0, got {self.channels}"),
            (self.window in WINDOWS, f"window must be one of {sorted(WINDOWS)}, got {self.window!r}"),
            (self.continuum in ("small", "kramers"), f"continuum must be 'small' or 'kramers', not {self.continuum!r}"),
            (0.0 < self.takeoff_deg <= 90.0, f"takeoff_deg must be in (0, 90], got {self.takeoff_deg}"),
            (0.0 <= self.tail < 1.0, f"tail must be in [0, 1), got {self.tail}"),
            (self.coating_nm >= 0.0, f"coating_nm must be >= 0, got {self.coating_nm}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def fwhm_ev(self, energy_ev: np.ndarray | float) -> np.ndarray:
        """Fano resolution (eV) at energy (eV): sqrt(noise^2 + 2.355^2 F eps E), noise fixed by ``fwhm_mn_ev``."""
        fano = FWHM_PER_SIGMA**2 * FANO * PAIR_EV
        noise2 = self.fwhm_mn_ev**2 - fano * MN_KA_EV
        return np.sqrt(noise2 + fano * np.maximum(np.asarray(energy_ev, dtype=np.float64), 0.0))


def energy_axis(inst: Instrument) -> EnergyAxis:
    """The channel calibration of ``inst``: energy(i) = offset_ev + i * channel_ev."""
    return EnergyAxis(size=int(inst.channels), scale_ev=float(inst.channel_ev), offset_ev=float(inst.offset_ev))


# ---------------------------------------------------------------- atomic data (cached xraydb look-ups)


@cache
def _element(el: str) -> tuple[int, float, float]:
    """(Z, A g/mol, J keV) with the Berger & Seltzer (1964) mean ionisation energy J = 9.76 Z + 58.5 Z^-0.19 eV."""
    z = int(xraydb.atomic_number(el))
    return z, float(xraydb.atomic_mass(el)), (9.76 * z + 58.5 * z**-0.19) * 1e-3


@cache
def _element_lines(el: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """All lines of ``el`` above LOW_CUT_EV: energy (eV), edge (eV), omega x (n b) x p, labels.

    A family's Bethe strength n_F b_F (K: 2 x 0.35, L: 8 x 0.25, M: 18 x 0.25) is shared among its subshells in
    proportion to the jump-ratio factor (1 - 1/r), the photo-absorption share of each subshell."""
    edges = xraydb.xray_edges(el)
    jump = {lev: 1.0 - 1.0 / edges[lev].jump_ratio for lev in LEVELS if lev in edges and edges[lev].jump_ratio > 1}
    family = {f: sum(j for lev, j in jump.items() if lev[0] == f) for f in "KLM"}
    out: list[tuple[float, float, float, str]] = []
    for level, j in jump.items():
        edge = edges[level]
        if edge.energy <= LOW_CUT_EV or edge.fyield <= 0:
            continue
        shell = edge.fyield * FAMILY_NB[level[0]] * j / family[level[0]]
        for name, line in xraydb.xray_lines(el, initial_level=level).items():
            if line.energy >= LOW_CUT_EV and line.intensity > 0:
                out.append((line.energy, edge.energy, shell * line.intensity, f"{el} {name}"))
    e, ec, w, lab = zip(*out, strict=True) if out else ((), (), (), ())
    return np.array(e, float), np.array(ec, float), np.array(w, float), tuple(lab)


@cache
def _mu_table(el: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(log E, log mu/rho) of ``el`` on a 200-point log grid plus both sides of every absorption edge."""
    grid = np.geomspace(LOW_CUT_EV, 1.0e5, 200)
    edges = np.array([e.energy for e in xraydb.xray_edges(el).values() if LOW_CUT_EV < e.energy < 1.0e5])
    if edges.size:
        grid = grid[np.all(np.abs(grid[:, None] / edges[None, :] - 1.0) > 2e-4, axis=1)]
        grid = np.sort(np.concatenate([grid, edges * (1.0 - 1e-4), edges * (1.0 + 1e-4)]))
    mu = np.asarray(xraydb.mu_elam(el, grid, kind=kind), dtype=np.float64)
    return np.log(grid), np.log(np.maximum(mu, 1e-30))


def _mu(fractions: tuple[tuple[str, float], ...], energy_ev: np.ndarray, kind: str = "total") -> np.ndarray:
    """Mass attenuation (cm^2/g) of a compound (element, mass fraction) at energies (eV), log-log interpolated."""
    log_e = np.log(np.clip(energy_ev, LOW_CUT_EV, 1.0e5))
    out = np.zeros_like(log_e)
    for el, w in fractions:
        le, lm = _mu_table(el, kind)
        out += w * np.exp(np.interp(log_e, le, lm))
    return out


@cache
def _fractions(formula: str) -> tuple[tuple[str, float], ...]:
    """Mass fractions (element, C) of a chemical formula ('Mg2SiO4', 'CaMg(CO3)2', 'Mg1.8Fe0.2SiO4')."""
    try:
        atoms = xraydb.chemparse(formula)
    except Exception as err:  # xraydb raises ValueError or KeyError on bad symbols
        raise ValueError(f"cannot parse formula {formula!r}: write element symbols, e.g. 'Mg2SiO4'") from err
    return _normalise({el: n * xraydb.atomic_mass(el) for el, n in atoms.items()})


def _normalise(masses: dict[str, float]) -> tuple[tuple[str, float], ...]:
    for el in masses:
        xraydb.atomic_number(el)  # raises on an unknown symbol
    total = sum(v for v in masses.values() if v > 0)
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"composition {masses!r} has no positive mass fraction")
    return tuple(sorted((el, float(v) / total) for el, v in masses.items() if v > 0))


# ---------------------------------------------------------------- electron physics (specimen)


@dataclass(frozen=True)
class _Matrix:
    """Mean quantities of a specimen: Z/A sum, J (keV), mass-mean Z and A, backscatter eta (PAP Zb mean)."""

    za: float
    j_kev: float
    zbar: float
    abar: float
    eta: float

    @classmethod
    def of(cls, fractions: tuple[tuple[str, float], ...]) -> _Matrix:
        c = np.array([w for _, w in fractions])
        z, a, j = (np.array(v, dtype=np.float64) for v in zip(*(_element(el) for el, _ in fractions), strict=True))
        za = float(np.sum(c * z / a))
        j_kev = float(np.exp(np.sum(c * z / a * np.log(j)) / za))  # Bethe-weighted ln J
        zb = float(np.sum(c * np.sqrt(z))) ** 2
        eta = 1.75e-3 * zb + 0.37 * (1.0 - math.exp(-0.015 * zb**1.3))  # Pouchou & Pichoir 1991, app. 1
        return cls(za, j_kev, float(np.sum(c * z)), float(np.sum(c * a)), eta)


def _ionisations(ec_kev: np.ndarray, e0_kev: float, m: _Matrix) -> np.ndarray:
    """int_Ec^E0 Q(E) / |dE/d(rho s)| dE per (atom/g): Bethe Q over Joy-Luo stopping power, cm^2 keV / (keV cm^2/g)."""
    lo, hi = np.log(ec_kev)[:, None], math.log(e0_kev)
    e = np.exp(lo + (hi - lo) * (_GL_X[None, :] + 1.0) / 2.0)
    stopping_x_e = 78500.0 * m.za * np.log(np.maximum(1.166 * (e + 0.85 * m.j_kev) / m.j_kev, 1.05))  # E |dE/ds|
    integrand = np.log(e / ec_kev[:, None]) * e / (ec_kev[:, None] * stopping_x_e)  # Q/S dE with dE = E d(ln E)
    return BETHE_C * (integrand @ _GL_W) * (hi - lo[:, 0]) / 2.0


def _backscatter_r(u0: np.ndarray, eta: float) -> np.ndarray:
    """R = 1 - eta W (1 - G(U0)), W = 0.595 + eta/3.7 + eta^4.55 (Love, Cox & Scott 1978; PAP app. 1)."""
    u0 = np.maximum(u0, 1.01)
    w = 0.595 + eta / 3.7 + eta**4.55
    q = (2.0 * w - 1.0) / (1.0 - w)
    j = 1.0 + u0 * (np.log(u0) - 1.0)
    g = (u0 - 1.0 - (1.0 - u0 ** -(1.0 + q)) / (1.0 + q)) / ((2.0 + q) * j)
    return 1.0 - eta * w * (1.0 - g)


def _phi_params(ec_kev: np.ndarray, e0_kev: float, m: _Matrix) -> tuple[np.ndarray, ...]:
    """Packwood-Brown (alpha, beta, gamma0, phi0) in (g/cm^2)^-1 and dimensionless, for edges Ec (keV)."""
    u0 = np.maximum(e0_kev / ec_kev, 1.01)
    ln_u = np.log(u0)
    phi0 = 1.0 + 2.8 * m.eta * (1.0 - 0.9 / u0)  # Reuter (1972)
    gamma0 = 5.0 * np.pi * u0 / ((u0 - 1.0) * ln_u) * (ln_u - 5.0 + 5.0 * u0**-0.2)  # Packwood (1986)
    rho_range = 2.76e-6 * m.abar * (e0_kev**1.67 - np.minimum(ec_kev, e0_kev / 1.01) ** 1.67) / m.zbar**0.889  # K-O
    alpha = 2.0 / rho_range
    return alpha, 0.4 * alpha * m.zbar**0.6, gamma0, phi0


def _absorption(chi: np.ndarray, ec_kev: np.ndarray, e0_kev: float, m: _Matrix) -> np.ndarray:
    """f(chi) = int phi(rz) exp(-chi rz) / int phi(rz), closed form with int exp(-a^2 z^2 - c z) ~ erfcx(c / 2a)."""
    alpha, beta, gamma0, phi0 = _phi_params(ec_kev, e0_kev, m)
    emitted = gamma0 * erfcx(chi / (2 * alpha)) - (gamma0 - phi0) * erfcx((chi + beta) / (2 * alpha))
    generated = gamma0 - (gamma0 - phi0) * erfcx(beta / (2 * alpha))
    return emitted / generated


def phi_rho_z(rho_z: np.ndarray, ec_kev: float, e0_kev: float, fractions: tuple[tuple[str, float], ...]) -> np.ndarray:
    """Packwood-Brown depth distribution phi(rho z) (rho z in g/cm^2) of an edge Ec (keV) in a specimen."""
    alpha, beta, gamma0, phi0 = (float(v[0]) for v in _phi_params(np.array([ec_kev]), e0_kev, _Matrix.of(fractions)))
    rz = np.asarray(rho_z, dtype=np.float64)
    return np.exp(-((alpha * rz) ** 2)) * (gamma0 - (gamma0 - phi0) * np.exp(-beta * rz))


# ---------------------------------------------------------------- detector


@lru_cache(maxsize=64)
def _window_layers(window: str) -> tuple[tuple[tuple[tuple[str, float], ...], float], ...]:
    return tuple((_fractions(f), rho * t) for f, rho, t in WINDOWS[window])


def detector_efficiency(energy_ev: np.ndarray, inst: Instrument) -> np.ndarray:
    """Fraction of photons (eV) absorbed in the crystal: window x grid x dead layer x crystal photo-absorption."""
    e = np.asarray(energy_ev, dtype=np.float64)
    si = (("Si", 1.0),)
    trans = np.exp(-_mu(si, e) * SI_DENSITY * DEAD_SI_CM)
    for frac, mass_thickness in _window_layers(inst.window):
        trans *= np.exp(-_mu(frac, e) * mass_thickness)
    if inst.window == "polymer":
        trans *= GRID_OPEN + (1.0 - GRID_OPEN) * np.exp(-_mu(si, e) * SI_DENSITY * GRID_SI_CM)
    absorbed = 1.0 - np.exp(-_mu(si, e, "photo") * SI_DENSITY * CRYSTAL_SI_CM)
    return np.where(e >= LOW_CUT_EV, trans * absorbed, 0.0)


@cache
def _si_escape_constants() -> tuple[float, float, float]:
    """(Si K edge eV, Si Ka eV, 0.5 omega_K (1 - 1/r)) for the Reed & Ware (1972) escape probability."""
    edge = xraydb.xray_edge("Si", "K")
    lines = xraydb.xray_lines("Si", initial_level="K")
    ka = sum(ln.energy * ln.intensity for n, ln in lines.items() if n.startswith("Ka")) / sum(
        ln.intensity for n, ln in lines.items() if n.startswith("Ka")
    )
    return edge.energy, ka, 0.5 * edge.fyield * (1.0 - 1.0 / edge.jump_ratio)


def escape_fraction(energy_ev: np.ndarray) -> np.ndarray:
    """Si Ka escape probability (Reed & Ware 1972): 0.5 w (1-1/r) [1 - (mu_K/mu_I) ln(1 + mu_I/mu_K)] above the edge."""
    e = np.asarray(energy_ev, dtype=np.float64)
    edge, ka, pre = _si_escape_constants()
    si = (("Si", 1.0),)
    ratio = _mu(si, e, "photo") / float(_mu(si, np.array([ka]), "photo")[0])  # mu_I / mu_K
    return np.where(e > edge, pre * (1.0 - np.log1p(ratio) / ratio), 0.0)


def _peak_cdf(y: np.ndarray, sigma: np.ndarray, tail: float, decay: np.ndarray) -> np.ndarray:
    """CDF at offsets y (eV) of (1-tail) Gaussian + tail x (low-energy exponential, length ``decay``, * Gaussian)."""
    gauss = 0.5 * erfc(-y / (sigma * math.sqrt(2.0)))
    if tail <= 0:
        return gauss
    u = y / sigma + sigma / decay
    safe_u = np.maximum(u, 0.0)
    term_pos = 0.5 * erfcx(safe_u / math.sqrt(2.0)) * np.exp(-0.5 * (y / sigma) ** 2)
    expo = np.minimum(y / decay + 0.5 * (sigma / decay) ** 2, 0.0)
    term_neg = np.exp(expo) * 0.5 * erfc(np.minimum(u, 0.0) / math.sqrt(2.0))
    return gauss + tail * np.where(u > 0, term_pos, term_neg)


def _peaks(energy: np.ndarray, weight: np.ndarray, charge_ev: np.ndarray, inst: Instrument) -> np.ndarray:
    """(C,) counts of lines (detected weight) at recorded energies with the resolution of ``charge_ev``.

    Each line is integrated exactly over the channels of a window from 30 tail lengths below to 8 sigma above it."""
    c = int(inst.channels)
    sigma = inst.fwhm_ev(charge_ev) / FWHM_PER_SIGMA
    decay = FWHM_PER_SIGMA * sigma
    lo = (energy - 8.0 * sigma - (30.0 * decay if inst.tail > 0 else 0.0) - inst.offset_ev) / inst.channel_ev
    hi = (energy + 8.0 * sigma - inst.offset_ev) / inst.channel_ev
    keep = (hi >= -0.5) & (lo <= c - 0.5) & (weight > 0)
    if not keep.any():
        return np.zeros(c)
    energy, weight, sigma, decay, lo, hi = (v[keep] for v in (energy, weight, sigma, decay, lo, hi))
    width = int(np.ceil((hi - lo).max())) + 2
    start = np.floor(lo).astype(np.int64)
    idx = start[:, None] + np.arange(width + 1)[None, :]  # channel-bound indices: bound i is below channel i
    bounds = inst.offset_ev + inst.channel_ev * (idx - 0.5)
    cdf = _peak_cdf(bounds - energy[:, None], sigma[:, None], inst.tail, decay[:, None])
    mass = np.diff(cdf, axis=1) * weight[:, None]
    ch = idx[:, :-1]
    inside = (ch >= 0) & (ch < c)
    return np.bincount(ch[inside], weights=mass[inside], minlength=c)


@lru_cache(maxsize=64)
def _broaden_kernel(inst: Instrument) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, (2h+1, C) normalised Gaussian weights) of the Fano resolution at each source channel."""
    e_ch = inst.offset_ev + inst.channel_ev * np.arange(inst.channels, dtype=np.float64)
    sigma_ch = inst.fwhm_ev(e_ch) / FWHM_PER_SIGMA / inst.channel_ev
    half = int(math.ceil(4.0 * sigma_ch.max()))
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets[:, None] / sigma_ch[None, :]) ** 2)
    return offsets, kernel / kernel.sum(axis=0)


def _broaden(spec: np.ndarray, inst: Instrument) -> np.ndarray:
    """Gaussian broadening of a smooth per-channel spectrum with the Fano resolution of each source channel."""
    offsets, kernel = _broaden_kernel(inst)
    half, n = int(offsets[-1]), spec.size
    out = np.zeros(n + 2 * half)
    spread = kernel * spec
    for k, d in enumerate(offsets):
        out[half + d : half + d + n] += spread[k]
    return out[half : half + n]


# ---------------------------------------------------------------- spectra


def line_intensities(formula_or_fractions: str | dict[str, float], inst: Instrument) -> dict[str, tuple[float, float]]:
    """Detected photons per electron per sr of every excited line: {'Fe Ka1': (energy eV, intensity)}."""
    fractions = _as_fractions(formula_or_fractions)
    e, w, labels = _lines(fractions, inst)
    return {lab: (float(ei), float(wi)) for lab, ei, wi in zip(labels, e, w, strict=True)}


def _lines(fractions: tuple[tuple[str, float], ...], inst: Instrument) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Energies (eV), detected intensities (photons / electron / sr) and labels of all excited lines."""
    e0_ev, e0 = inst.beam_kev * 1e3, inst.beam_kev
    m = _Matrix.of(fractions)
    energies, weights, edges, labels = [], [], [], []
    for el, c in fractions:
        e, ec, shell_p, labs = _element_lines(el)
        keep = ec < e0_ev
        if not keep.any():
            continue
        ec_k = ec[keep] / 1e3
        gen = c * AVOGADRO / _element(el)[1] * _ionisations(ec_k, e0, m) * _backscatter_r(e0 / ec_k, m.eta)
        energies.append(e[keep])
        edges.append(ec_k)
        weights.append(gen * shell_p[keep] / (4 * np.pi))
        labels += [lab for lab, k in zip(labs, keep, strict=True) if k]
    if not energies:
        return np.zeros(0), np.zeros(0), []
    e, w = np.concatenate(energies), np.concatenate(weights)
    chi = _mu(fractions, e) / math.sin(math.radians(inst.takeoff_deg))
    w = w * _absorption(chi, np.concatenate(edges), e0, m) * _coating(e, inst) * detector_efficiency(e, inst)
    return e, w, labels


def _coating(energy_ev: np.ndarray, inst: Instrument) -> np.ndarray:
    if inst.coating_nm <= 0:
        return np.ones_like(energy_ev)
    path = COATING_DENSITY * inst.coating_nm * 1e-7 / math.sin(math.radians(inst.takeoff_deg))
    return np.exp(-_mu((("C", 1.0),), energy_ev) * path)


def _as_fractions(formula_or_fractions: str | dict[str, float]) -> tuple[tuple[str, float], ...]:
    if isinstance(formula_or_fractions, str):
        return _fractions(formula_or_fractions.strip())
    return _normalise({str(k): float(v) for k, v in dict(formula_or_fractions).items()})


@lru_cache(maxsize=64)
def _channel_transmission(inst: Instrument) -> np.ndarray:
    """(C,) coating transmission x detector efficiency at the channel energies (LOW_CUT_EV below the cut)."""
    e = np.maximum(inst.offset_ev + inst.channel_ev * np.arange(inst.channels, dtype=np.float64), LOW_CUT_EV)
    return _coating(e, inst) * detector_efficiency(e, inst)


@lru_cache(maxsize=1024)
def _expected(fractions: tuple[tuple[str, float], ...], inst: Instrument) -> np.ndarray:
    e0_ev, e0 = inst.beam_kev * 1e3, inst.beam_kev
    e_ch = inst.offset_ev + inst.channel_ev * np.arange(inst.channels, dtype=np.float64)
    m = _Matrix.of(fractions)
    # continuum: photons / electron / sr per channel, generated like an edge at E, absorbed, detected
    ok = (e_ch >= LOW_CUT_EV) & (e_ch < e0_ev)
    e_ok = np.where(ok, e_ch, LOW_CUT_EV)
    exponent = SMALL_X if inst.continuum == "small" else 1.0
    cont = CONTINUUM_K * m.zbar * np.maximum(e0_ev / e_ok - 1.0, 0.0) ** exponent * inst.channel_ev / (4 * np.pi)
    chi = _mu(fractions, e_ok) / math.sin(math.radians(inst.takeoff_deg))
    cont = np.where(ok, cont * _absorption(chi, e_ok / 1e3, e0, m), 0.0) * _channel_transmission(inst)
    e, w, _ = _lines(fractions, inst)
    charge = e
    if inst.escape:
        _, si_ka, _ = _si_escape_constants()
        f_line = escape_fraction(e)
        esc = (f_line > 0) & (e - si_ka >= LOW_CUT_EV)
        e, charge = np.concatenate([e, e[esc] - si_ka]), np.concatenate([charge, e[esc] - si_ka])
        w = np.concatenate([w * (1.0 - f_line), (w * f_line)[esc]])
        f_cont = escape_fraction(e_ok) * ok
        shifted = np.interp(e_ch + si_ka, e_ch, cont * f_cont, left=0.0, right=0.0)
        cont = cont * (1.0 - f_cont) + np.where(ok, shifted, 0.0)
    spec = _broaden(cont, inst) + _peaks(e, w, charge, inst)
    spec = np.where(e_ch >= LOW_CUT_EV, spec, 0.0)
    total = spec.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"composition {fractions} gives no counts on the axis {energy_axis(inst)} at {e0} keV")
    out = spec / total
    out.flags.writeable = False
    return out


def expected_spectrum(formula_or_fractions: str | dict[str, float], inst: Instrument) -> np.ndarray:
    """(channels,) noise-free spectrum summing to 1, of a formula ('Mg2SiO4') or mass fractions ({'Fe': 0.7, ...})."""
    return _expected(_as_fractions(formula_or_fractions), inst).copy()


def simulate(formulas: list[str], counts: float | np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """(N, channels) float32 Poisson counts, one spectrum per formula, ``counts`` = mean total per spectrum."""
    n = len(formulas)
    lam = np.broadcast_to(np.asarray(counts, dtype=np.float64), (n,))
    if np.any(~np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"counts must be finite and >= 0, got {counts!r}")
    uniq = {f: _expected(_as_fractions(f), inst) for f in dict.fromkeys(formulas)}
    if n == 0:
        return np.zeros((0, inst.channels), np.float32)
    mean = np.stack([uniq[f] for f in formulas]) * lam[:, None]
    return rng.poisson(mean).astype(np.float32)
