"""Rock types: mineral assemblages with modal proportions and microstructure parameters.

Modal proportions are area fractions of the grain minerals (normalised on construction).
Sizes are in micrometres; the simulator converts them with the field's pixel size.
BSE-confusable pairs are deliberate: quartz / albite / orthoclase in granite and sandstone,
calcite / dolomite in carbonate, so that BSE alone cannot segment them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fusionseg.sem.minerals import SimulationError, get_mineral


@dataclass(frozen=True)
class RockType:
    """Recipe of a simulated rock.

    texture: ``interlocking`` (space-filling grains), ``clastic`` (rounded grains in a
    matrix) or ``mount`` (separate particles in epoxy). ``packing`` is the fraction of the
    nominal grain radius kept as solid for clastic/mount textures. ``rims`` and
    ``intergrowths`` map a host mineral to (other mineral, probability per grain).
    """

    name: str
    modes: dict[str, float]
    grain_diameter_um: float = 40.0
    grain_sigma: float = 0.45
    texture: str = "interlocking"
    packing: float = 1.0
    matrix: dict[str, float] = field(default_factory=dict)
    inclusions: dict[str, float] = field(default_factory=dict)
    inclusions_per_grain: float = 0.0
    inclusion_diameter_um: float = 4.0
    rims: dict[str, tuple[str, float]] = field(default_factory=dict)
    rim_width_um: float = 3.0
    intergrowths: dict[str, tuple[str, float]] = field(default_factory=dict)
    lamella_spacing_um: float = 6.0
    pore_fraction: float = 0.0
    pore_diameter_um: float = 6.0

    def __post_init__(self) -> None:
        if self.texture not in ("interlocking", "clastic", "mount"):
            raise SimulationError(f"Rock {self.name!r}: texture must be interlocking, clastic or mount.")
        if self.texture != "interlocking" and not self.matrix:
            raise SimulationError(f"Rock {self.name!r}: a {self.texture} texture needs matrix minerals.")
        for table in (self.modes, self.matrix, self.inclusions):
            total = sum(table.values())
            if table and (total <= 0 or min(table.values()) < 0):
                raise SimulationError(f"Rock {self.name!r}: proportions must be >= 0 with a positive sum.")
            for k in list(table):
                table[k] = table[k] / total
        for name in self.minerals():
            get_mineral(name)  # unknown names raise, listing the known ones

    def minerals(self) -> list[str]:
        """Every mineral this rock can contain (grains, matrix, inclusions, rims, lamellae, pores)."""
        names = list(self.modes) + list(self.matrix) + list(self.inclusions)
        names += [m for m, _ in self.rims.values()] + [m for m, _ in self.intergrowths.values()]
        if self.pore_fraction > 0:
            names.append("pore")
        return list(dict.fromkeys(names))


_FELSIC_ACCESSORIES = {"zircon": 0.3, "apatite": 0.35, "monazite": 0.1, "magnetite": 0.15, "ilmenite": 0.1}

ROCKS: dict[str, RockType] = {}


def register_rock(rock: RockType) -> RockType:
    """Add a rock type (name must be new)."""
    key = rock.name.strip().lower()
    if key in ROCKS and ROCKS[key] != rock:
        raise SimulationError(f"Rock type {key!r} already exists; choose another name.")
    ROCKS[key] = rock
    return rock


def get_rock(name: str | RockType) -> RockType:
    """The rock type ``name``; an unknown name lists the known ones."""
    if isinstance(name, RockType):
        return name
    key = str(name).strip().lower().replace("_", "-")
    if key not in ROCKS:
        raise SimulationError(f"Unknown rock type {name!r}. Known rock types: {', '.join(ROCKS)}.")
    return ROCKS[key]


def rock_names() -> tuple[str, ...]:
    return tuple(ROCKS)


for _rock in (
    RockType(
        "granite",
        modes={
            "quartz": 0.30,
            "albite": 0.28,
            "orthoclase": 0.25,
            "biotite": 0.08,
            "muscovite": 0.05,
            "hornblende": 0.04,
        },
        grain_diameter_um=60.0,
        inclusions=_FELSIC_ACCESSORIES,
        inclusions_per_grain=0.35,
        rims={"biotite": ("chlorite", 0.5)},
        intergrowths={"orthoclase": ("albite", 0.5)},  # perthite
        pore_fraction=0.003,
    ),
    RockType(
        "basalt",
        modes={
            "anorthite": 0.45,
            "augite": 0.30,
            "forsterite": 0.12,
            "magnetite": 0.06,
            "ilmenite": 0.04,
            "titanite": 0.03,
        },
        grain_diameter_um=25.0,
        grain_sigma=0.55,
        inclusions={"apatite": 0.5, "magnetite": 0.3, "chromite": 0.2},
        inclusions_per_grain=0.2,
        rims={"forsterite": ("fayalite", 0.7), "augite": ("hornblende", 0.2)},  # zoned olivine, uralitised pyroxene
        pore_fraction=0.03,
        pore_diameter_um=10.0,
    ),
    RockType(
        "sulfide-ore",
        modes={
            "pyrite": 0.22,
            "chalcopyrite": 0.15,
            "sphalerite": 0.15,
            "galena": 0.10,
            "pyrrhotite": 0.10,
            "quartz": 0.15,
            "calcite": 0.05,
            "barite": 0.05,
            "arsenopyrite": 0.03,
        },
        grain_diameter_um=45.0,
        grain_sigma=0.6,
        inclusions={"chalcopyrite": 0.6, "galena": 0.2, "magnetite": 0.2},  # chalcopyrite disease in sphalerite
        inclusions_per_grain=0.5,
        inclusion_diameter_um=3.0,
        rims={"pyrrhotite": ("pyrite", 0.3), "magnetite": ("hematite", 0.5)},
        intergrowths={"sphalerite": ("chalcopyrite", 0.2)},
        pore_fraction=0.01,
    ),
    RockType(
        "carbonate",
        modes={
            "calcite": 0.50,
            "dolomite": 0.33,
            "quartz": 0.05,
            "fluorite": 0.03,
            "gypsum": 0.03,
            "halite": 0.01,
            "siderite": 0.02,
            "apatite": 0.02,
            "pyrite": 0.01,
        },
        grain_diameter_um=30.0,
        grain_sigma=0.5,
        inclusions={"pyrite": 0.5, "apatite": 0.5},
        inclusions_per_grain=0.1,
        rims={"calcite": ("dolomite", 0.3)},  # dolomitisation front
        pore_fraction=0.02,
    ),
    RockType(
        "sandstone",
        modes={
            "quartz": 0.70,
            "orthoclase": 0.10,
            "albite": 0.10,
            "muscovite": 0.04,
            "zircon": 0.02,
            "rutile": 0.02,
            "ilmenite": 0.02,
        },
        grain_diameter_um=70.0,
        grain_sigma=0.4,
        texture="clastic",
        packing=0.85,
        matrix={"kaolinite": 0.35, "calcite": 0.25, "pore": 0.3, "hematite": 0.1},
        rims={"quartz": ("hematite", 0.15)},  # iron-oxide grain coatings
        rim_width_um=2.0,
    ),
    RockType(
        "grain-mount",
        modes={
            "quartz": 0.15,
            "albite": 0.10,
            "orthoclase": 0.10,
            "calcite": 0.10,
            "dolomite": 0.08,
            "pyrite": 0.10,
            "chalcopyrite": 0.07,
            "sphalerite": 0.06,
            "galena": 0.05,
            "magnetite": 0.06,
            "hematite": 0.05,
            "barite": 0.04,
            "fluorite": 0.04,
        },
        grain_diameter_um=35.0,
        grain_sigma=0.6,
        texture="mount",
        packing=0.75,
        matrix={"epoxy": 1.0},
        intergrowths={"sphalerite": ("galena", 0.3), "pyrite": ("chalcopyrite", 0.3)},  # locked particles
        lamella_spacing_um=10.0,
        pore_fraction=0.005,
        pore_diameter_um=8.0,
    ),
):
    register_rock(_rock)
