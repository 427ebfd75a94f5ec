"""Mineral library: formulas, densities, weight fractions and the global class vocabulary.

The built-in library lives in ``minerals.yaml`` next to this module; its order is the global
class vocabulary returned by `class_names()` (stable across versions: entries are appended,
never reordered). Users append their own minerals with `add_minerals(path)` from a YAML file
(``minerals: [{name, formula, density}, ...]`` or a bare list) or a CSV file with the header
``name,formula,density``. Formulas are parsed by ``xraydb.chemparse`` (parentheses and decimal
stoichiometry allowed); weight fractions use xraydb atomic masses.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xraydb
import yaml

from fusionseg.errors import FusionSegError

LIBRARY_FILE = Path(__file__).with_name("minerals.yaml")


class SimulationError(FusionSegError):
    """Bad simulator input (unknown name, impossible setting); the message names the fix."""


def reuter_eta(z: np.ndarray | float) -> np.ndarray:
    """Backscatter coefficient of an element, Reuter (1972): -0.0254 + 0.016 Z - 1.86e-4 Z^2 + 8.3e-7 Z^3."""
    z = np.asarray(z, dtype=np.float64)
    return -0.0254 + 0.016 * z - 1.86e-4 * z**2 + 8.3e-7 * z**3


@dataclass(frozen=True)
class Mineral:
    """A phase of the library. ``density`` in g/cm^3; ``formula`` empty for a pore (vacuum)."""

    name: str
    formula: str
    density: float
    weight_fractions: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_formula(cls, name: str, formula: str, density: float) -> Mineral:
        """Parse ``formula`` and compute element weight fractions from xraydb atomic masses."""
        name = str(name).strip().lower()
        if not name:
            raise SimulationError("A mineral needs a non-empty name.")
        formula = "" if formula is None else str(formula).strip()
        try:
            atoms = xraydb.chemparse(formula) if formula else {}
        except ValueError as err:
            raise SimulationError(
                f"Mineral {name!r}: cannot parse formula {formula!r} ({str(err).splitlines()[0]}); "
                "write it with element symbols, e.g. 'CaMg(CO3)2' or 'Mg1.6Fe0.4SiO4'."
            ) from err
        density = float(density)
        if not np.isfinite(density) or density < 0 or (atoms and density == 0):
            raise SimulationError(f"Mineral {name!r}: density must be > 0 g/cm^3 (got {density}).")
        mass = {el: n * xraydb.atomic_mass(el) for el, n in atoms.items()}
        total = sum(mass.values())
        fractions = {el: m / total for el, m in mass.items()} if total > 0 else {}
        return cls(name, formula, density, fractions)

    @cached_property
    def eta(self) -> float:
        """BSE backscatter coefficient: weight-fraction mean of Reuter's eta(Z) (0 for a pore)."""
        if not self.weight_fractions:
            return 0.0
        z = np.array([xraydb.atomic_number(el) for el in self.weight_fractions])
        w = np.array(list(self.weight_fractions.values()))
        return float(np.dot(w, reuter_eta(z)))

    @cached_property
    def mean_z(self) -> float:
        """Weight-fraction mean atomic number (Kramers continuum strength)."""
        return float(sum(w * xraydb.atomic_number(el) for el, w in self.weight_fractions.items()))

    @property
    def is_void(self) -> bool:
        """True for a pore: no matter under the beam."""
        return not self.weight_fractions


_LIBRARY: dict[str, Mineral] = {}


def _records_from_file(path: Path) -> list[Mapping[str, Any]]:
    if not path.is_file():
        raise SimulationError(f"Mineral file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text()) or []
        records = data.get("minerals", []) if isinstance(data, dict) else data
    elif suffix == ".csv":
        with path.open(newline="") as fh:
            records = list(csv.DictReader(fh))
    else:
        raise SimulationError(f"Mineral file {path} must be .yaml, .yml or .csv (columns name, formula, density).")
    for rec in records:
        if not isinstance(rec, Mapping) or not {"name", "formula", "density"} <= set(rec):
            raise SimulationError(f"{path}: every entry needs name, formula and density; got {rec!r}.")
    return records


def add_minerals(source: str | Path | Iterable[Mapping[str, Any]]) -> list[str]:
    """Append minerals (name, formula, density) from a YAML/CSV file or records to the library.

    New names are appended to the global vocabulary; re-adding an identical entry is a no-op,
    redefining an existing name with another formula raises. Returns the names added.
    """
    records = _records_from_file(Path(source)) if isinstance(source, str | Path) else list(source)
    _ensure_loaded()
    added = []
    for rec in records:
        mineral = Mineral.from_formula(rec["name"], rec["formula"], rec["density"])
        old = _LIBRARY.get(mineral.name)
        if old is not None:
            if (old.formula, old.density) != (mineral.formula, mineral.density):
                raise SimulationError(
                    f"Mineral {mineral.name!r} already exists as {old.formula} ({old.density} g/cm^3); "
                    "pick another name for a different composition."
                )
            continue
        _LIBRARY[mineral.name] = mineral
        added.append(mineral.name)
    return added


def _ensure_loaded() -> None:
    if not _LIBRARY:
        for rec in _records_from_file(LIBRARY_FILE):
            m = Mineral.from_formula(rec["name"], rec["formula"], rec["density"])
            _LIBRARY[m.name] = m


def class_names() -> tuple[str, ...]:
    """The global mineral vocabulary (class names) in its fixed order."""
    _ensure_loaded()
    return tuple(_LIBRARY)


def class_index(name: str) -> int:
    """Global class id of a mineral name."""
    return class_names().index(get_mineral(name).name)


def get_mineral(name: str) -> Mineral:
    """The library entry ``name``; an unknown name lists the known ones."""
    _ensure_loaded()
    key = str(name).strip().lower()
    if key not in _LIBRARY:
        raise SimulationError(
            f"Unknown mineral {name!r}. Known minerals: {', '.join(_LIBRARY)}. "
            "Add your own with fusionseg.sem.data.synthetic.add_minerals('file.yaml' or 'file.csv')."
        )
    return _LIBRARY[key]


def library() -> tuple[Mineral, ...]:
    """All minerals in vocabulary order."""
    _ensure_loaded()
    return tuple(_LIBRARY.values())


def eta_table() -> np.ndarray:
    """(K,) BSE backscatter coefficient of every class in vocabulary order."""
    return np.array([m.eta for m in library()], dtype=np.float64)
