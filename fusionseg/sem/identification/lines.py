"""X-ray line families of the elements, from xraydb: what the element-line fit places on a spectrum.

A *family* is the K, L or M lines of one element: their energies (eV) and relative weights, the
weights being xraydb's line intensities within each ionised level times the level's fluorescence
yield and a rough share of ionisations per subshell (L3:L2:L1 = 1 : 0.5 : 0.25, Coster-Kronig
transfers folded in; M5..M1 = 1 : 0.67 : 0.4 : 0.2 : 0.1). Only levels the beam ionises (edge < E0)
and lines on the fitted energy range count. Each family is fitted with one amplitude: its net counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
import xraydb

SHELL_LEVELS = {"K": (("K", 1.0),), "L": (("L3", 1.0), ("L2", 0.5), ("L1", 0.25)),
                "M": (("M5", 1.0), ("M4", 0.67), ("M3", 0.4), ("M2", 0.2), ("M1", 0.1))}  # fmt: skip
MIN_LINE_SHARE = 0.01  # lines under 1 % of their family's strongest are left out of its template
WELL_EXCITED = 1.5  # overvoltage E0 / Ec above which a family is strong enough to quantify with

# Elements an SEM analysis looks for: the EDS-visible elements of the identification library (a test checks that
# every one there is here). H, He, Li, Be, B emit nothing an EDS detector records usefully; N (392 eV) sits in the
# detector cut-off, where real continua misfit. An element no library entry holds could name nothing, and as a
# candidate its L or M lines would compete with the K lines of the common ones (Rb L on Si K, Tl M on S K).
CANDIDATE_ELEMENTS = (
    "C", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Ti", "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "As", "Sr", "Y", "Zr", "Nb", "Mo", "Ag", "Cd", "Sn", "Sb", "Ba", "La", "Ce", "Nd", "Ta", "W", "Pt", "Au",
    "Hg", "Pb", "Bi", "Th", "U",
)  # fmt: skip


@dataclass(frozen=True)
class Family:
    """The K, L or M lines of one element: energies (eV), weights (sum 1), the edge (eV) of its main level."""

    element: str
    shell: str
    energies_ev: tuple[float, ...]
    weights: tuple[float, ...]
    edge_ev: float
    generation: float  # lines per unit weight fraction: fluorescence yield x subshell share x (U-1)^1.67 / atomic mass

    @property
    def label(self) -> str:
        """'Fe K', 'Pb M'."""
        return f"{self.element} {self.shell}"

    @cached_property
    def main_ev(self) -> float:
        """Energy (eV) of the family's strongest line (its Kα1, Lα1 or Mα)."""
        return self.energies_ev[int(np.argmax(self.weights))]


@cache
def _family(element: str, shell: str, beam_ev: float) -> Family | None:
    """One family at beam energy ``beam_ev`` (all lines, no energy window), or None when the beam excites none."""
    edges = xraydb.xray_edges(element)
    energies, weights, generation, main_edge = [], [], 0.0, None
    for level, share in SHELL_LEVELS[shell]:
        edge = edges.get(level)
        if edge is None or not 0 < edge.energy < beam_ev or edge.fyield <= 0:
            continue
        main_edge = main_edge or edge.energy
        level_weight = share * edge.fyield * (beam_ev / edge.energy - 1.0) ** 1.67
        generation += level_weight
        for line in xraydb.xray_lines(element, initial_level=level).values():
            if line.intensity > 0 and line.energy > 0:
                energies.append(line.energy)
                weights.append(level_weight * line.intensity)
    if not energies:
        return None
    w = np.array(weights)
    keep = w >= MIN_LINE_SHARE * w.max()
    e, w = np.array(energies)[keep], w[keep]
    per_mass = generation / xraydb.atomic_mass(element)  # ionised atoms per unit weight fraction scale as 1 / A
    return Family(element, shell, tuple(e.tolist()), tuple((w / w.sum()).tolist()), float(main_edge), per_mass)


def families(elements: Iterable[str], beam_kev: float, lo_ev: float, hi_ev: float) -> list[Family]:
    """Families of ``elements`` excited by a ``beam_kev`` beam whose strongest line lies in [lo_ev, hi_ev] (eV)."""
    out = []
    for el in elements:
        for shell in SHELL_LEVELS:
            fam = _family(el, shell, float(beam_kev) * 1000.0)
            if fam is not None and lo_ev <= fam.main_ev <= hi_ev:
                out.append(fam)
    return out


def quant_family(fams: Iterable[Family], beam_kev: float) -> dict[str, Family]:
    """Per element, the family it is quantified from: the highest shell the beam excites well (overvoltage
    >= `WELL_EXCITED`), else its most energetic family. Kα for light elements, Lα for Ba or Pb: a heavy element's
    M or L lines sit on light elements' K lines (Pb Mα on S Kα), its highest well-excited family rarely does."""
    best: dict[str, Family] = {}
    for fam in fams:
        cur = best.get(fam.element)
        well = beam_kev * 1000.0 / fam.edge_ev >= WELL_EXCITED
        cur_well = cur is not None and beam_kev * 1000.0 / cur.edge_ev >= WELL_EXCITED
        if cur is None or (well, fam.main_ev) > (cur_well, cur.main_ev):
            best[fam.element] = fam
    return best
