"""The identification library: minerals and the other materials an SEM sees, as compositions to match.

``minerals.csv`` (name, formula, density g/cm^3, group, series, source, abundance) holds ~250 entries;
``solid_solutions.csv`` (series, end_member_a, end_member_b) the binary joins along which a
composition may lie: each join adds compositions every 5 % of the way, by mixing the two formulas
atom by atom, named after the series member nearest in composition. Compositions are weight
fractions of the EDS-visible elements (`lines.CANDIDATE_ELEMENTS`; H, Li, Be, B dropped).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import xraydb

from fusionseg.sem.identification.lines import CANDIDATE_ELEMENTS

HERE = Path(__file__).parent
JOIN_STEPS = 20
ABUNDANCE_PENALTY = {"common": 0.0, "accessory": 0.3, "rare": 1.0}  # in mean chi-square per element (`match`)


@dataclass(frozen=True)
class Entry:
    """One library material; ``formula`` as written in the CSV, ``density`` g/cm^3."""

    name: str
    formula: str
    density: float
    group: str
    series: str
    source: str
    abundance: str = "common"


@dataclass(frozen=True, eq=False)
class Library:
    """Candidate compositions (K, E) over ``elements``: the entries, then the points along the joins;
    ``entry`` (K,) the index of the entry each candidate is named after; ``join`` (K,) its series or ''."""

    entries: tuple[Entry, ...]
    elements: tuple[str, ...]
    compositions: np.ndarray
    entry: np.ndarray
    join: tuple[str, ...]

    def prior(self) -> np.ndarray:
        """(K,) score added when ranking candidates: how rarely an analyst meets the entry (`ABUNDANCE_PENALTY`);
        a rare mineral must fit clearly better than a common one of nearly the same composition to be named."""
        return np.array([ABUNDANCE_PENALTY[self.entries[i].abundance] for i in self.entry])

    def names(self) -> list[str]:
        """Name of each candidate (its entry's)."""
        return [self.entries[i].name for i in self.entry]

    def index(self, name: str) -> int:
        """Entry index of ``name``; KeyError when absent."""
        for i, e in enumerate(self.entries):
            if e.name == name:
                return i
        raise KeyError(name)


def atoms(formula: str) -> dict[str, float]:
    """Atoms per formula unit (xraydb's parser: parentheses, decimals)."""
    return dict(xraydb.chemparse(formula)) if formula else {}


@cache
def atomic_mass(element: str) -> float:
    """xraydb's atomic mass (g/mol), cached: xraydb scans its table per call (~0.2 ms)."""
    return float(xraydb.atomic_mass(element))


def visible_fractions(formula_atoms: dict[str, float], elements: tuple[str, ...]) -> np.ndarray:
    """(E,) weight fractions of ``elements`` in a composition given as atoms per formula unit, renormalised over
    the EDS-visible elements."""
    mass = np.array([formula_atoms.get(el, 0.0) * atomic_mass(el) for el in elements])
    return mass / mass.sum() if mass.sum() > 0 else mass


@cache
def load_library(minerals: Path = HERE / "minerals.csv", joins: Path = HERE / "solid_solutions.csv") -> Library:
    """The built-in library (or another pair of CSV files of the same columns)."""
    with open(minerals, newline="") as fh:
        entries = tuple(Entry(r["name"].strip().lower(), r["formula"].strip(), float(r["density"]), r["group"].strip(),
                              r["series"].strip(), r["source"].strip(), (r.get("abundance") or "common").strip())
                        for r in csv.DictReader(fh))  # fmt: skip
    elements = CANDIDATE_ELEMENTS
    comps = [visible_fractions(atoms(e.formula), elements) for e in entries]
    owner, join_of = list(range(len(entries))), [""] * len(entries)
    by_name = {e.name: i for i, e in enumerate(entries)}
    with open(joins, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        a, b = by_name[row["end_member_a"].strip().lower()], by_name[row["end_member_b"].strip().lower()]
        members = [i for i, e in enumerate(entries) if e.series == row["series"].strip()] or [a, b]
        atoms_a, atoms_b = atoms(entries[a].formula), atoms(entries[b].formula)
        for t in np.linspace(0, 1, JOIN_STEPS + 1)[1:-1]:
            mix = {el: (1 - t) * atoms_a.get(el, 0.0) + t * atoms_b.get(el, 0.0) for el in {*atoms_a, *atoms_b}}
            comp = visible_fractions(mix, elements)
            comps.append(comp)
            owner.append(min(members, key=lambda i: float(np.abs(comps[i] - comp).sum())))
            join_of.append(row["series"].strip())
    return Library(entries, elements, np.stack(comps), np.array(owner), tuple(join_of))
