"""Built-in SEM simulator: library, physics, fields, data source, disk format, errors."""

import warnings

import numpy as np
import pytest
import torch

from fusionseg.data.io import load_sample, save_sample, write_dataset
from fusionseg.registry import DATA_SOURCES
from fusionseg.sem.data.synthetic import (
    SimulationError,
    SpectrumModel,
    add_minerals,
    class_index,
    class_names,
    get_mineral,
    reference_spectra,
    simulate_field,
    simulate_to_folder,
)
from fusionseg.sem.data.synthetic.microstructure import power_diagram
from fusionseg.sem.data.synthetic.rocks import ROCKS
from fusionseg.sem.meta import EnergyAxis

warnings.filterwarnings("ignore", message="Elam tables")

REQUIRED = (
    "quartz albite anorthite orthoclase muscovite biotite chlorite hornblende augite forsterite fayalite almandine "
    "calcite dolomite apatite zircon rutile ilmenite magnetite hematite pyrite chalcopyrite sphalerite galena "
    "pyrrhotite barite fluorite halite gypsum kaolinite monazite epoxy pore"
).split()


def test_library_vocabulary_is_stable_and_complete():
    names = class_names()
    assert len(names) >= 32 and set(REQUIRED) <= set(names)
    assert names[:4] == ("quartz", "albite", "anorthite", "orthoclase"), "vocabulary order must never change"
    assert len(set(names)) == len(names) and all(n == n.lower() for n in names)


def test_weight_fractions_from_atomic_masses():
    q = get_mineral("quartz").weight_fractions
    assert q["Si"] == pytest.approx(28.0855 / 60.0843, rel=1e-3) and sum(q.values()) == pytest.approx(1.0)
    assert get_mineral("galena").eta > 0.44 > get_mineral("pyrite").eta > get_mineral("quartz").eta
    assert get_mineral("pore").is_void and get_mineral("pore").eta == 0.0


@pytest.fixture
def restored_library(monkeypatch):
    """The global mineral library as it was: a user mineral added here must not reach later tests' models."""
    from fusionseg.sem import minerals

    class_names()  # load the built-in library before copying it
    monkeypatch.setattr(minerals, "_LIBRARY", dict(minerals._LIBRARY))


def test_user_minerals_are_appended(tmp_path, restored_library):
    n0 = len(class_names())
    (tmp_path / "m.csv").write_text("name,formula,density\nTestite,Mg3Si4O10(OH)2,2.75\n")
    assert add_minerals(tmp_path / "m.csv") == ["testite"]
    assert class_names()[-1] == "testite" and len(class_names()) == n0 + 1
    assert add_minerals(tmp_path / "m.csv") == []  # identical re-add is a no-op
    (tmp_path / "bad.yaml").write_text("minerals:\n  - {name: testite, formula: MgO, density: 3.6}\n")
    with pytest.raises(SimulationError, match="already exists"):
        add_minerals(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("- {name: weird, formula: Xx2O, density: 3}\n")
    with pytest.raises(SimulationError, match="cannot parse formula"):
        add_minerals(tmp_path / "bad2.yaml")


def test_unknown_names_list_the_known_ones():
    with pytest.raises(SimulationError, match="Known minerals: quartz, albite"):
        get_mineral("unobtainium")
    with pytest.raises(SimulationError, match="Known rock types: granite"):
        simulate_field("gneiss", 32)
    with pytest.raises(SimulationError, match="Known rock types"):
        DATA_SOURCES.create("sem-synthetic", rocks=("granit",))


def test_reference_spectra_peaks_and_normalisation():
    axis = EnergyAxis()
    ref = reference_spectra(["quartz", "galena", "calcite"], axis, 20.0, 130.0)
    assert ref.shape == (3, 2048) and np.allclose(ref.sum(1), 1.0) and (ref >= 0).all()
    e = axis.energies_ev().numpy()
    assert abs(e[ref[0].argmax()] - 1740) <= 10  # Si Ka
    assert 2300 <= e[ref[1].argmax()] <= 2350  # the S Ka (2307 eV) / Pb Ma (2346 eV) blend
    assert abs(e[ref[2].argmax()] - 3691) <= 10  # Ca Ka
    assert ref[:, e < 100].sum() < 1e-3  # nothing below the detector threshold
    assert ref[:, e > 20000].sum() < 1e-6  # nothing above the beam energy
    # lower beam energy: Fe K (7.1 keV edge) cannot be excited at 5 kV, Fe L can
    fe5 = reference_spectra(["fayalite"], axis, 5.0)[0]
    assert fe5[(e > 6300) & (e < 6500)].sum() < 1e-3 and fe5[(e > 650) & (e < 750)].sum() > 0.02


def test_fwhm_follows_detector_law():
    axis = EnergyAxis(4096, 2.0, 0.0)
    ref = reference_spectra([get_mineral("magnetite")], axis, 20.0, 130.0)[0]
    e = axis.energies_ev().numpy()
    win = (e > 6250) & (e < 6800)
    peak = e[win][ref[win].argmax()]
    half = ref[win] >= ref[win].max() / 2
    fwhm = e[win][half].max() - e[win][half].min()
    assert fwhm == pytest.approx(np.sqrt(130**2 + 2.5 * (peak - 5895)), abs=12)  # Ka1/Ka2 blend widens a little


def test_poisson_counts_statistics():
    model = SpectrumModel(class_names(), counts_per_spectrum=1000)
    ids = np.full(4000, class_index("orthoclase"))
    x = model.sample(ids, np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (4000, 2048) and np.all(x == np.round(x))
    totals = x.sum(1)
    assert totals.mean() == pytest.approx(1000, rel=0.01) and totals.var() == pytest.approx(1000, rel=0.1)
    expected = model.expected(ids[:1])[0] * len(ids)
    ok = expected > 30
    z = (x.sum(0)[ok] - expected[ok]) / np.sqrt(expected[ok])
    assert abs(z.mean()) < 0.2 and 0.8 < z.std() < 1.2  # summed counts match the expected spectrum
    # dense regime (high counts) uses per-channel Poisson draws
    hi = SpectrumModel(class_names(), counts_per_spectrum=1e5).sample(ids[:50], np.random.default_rng(0))
    assert hi.sum(1).mean() == pytest.approx(1e5, rel=0.01)


def test_power_diagram_matches_brute_force():
    rng = np.random.default_rng(0)
    seeds = rng.random((60, 2)) * 90 - 5
    weights = (rng.lognormal(1.5, 0.5, 60)) ** 2
    warp = tuple(rng.normal(0, 1.5, (80, 70)).astype(np.float32) for _ in range(2))
    labels, sqd = power_diagram((80, 70), seeds, weights, warp=warp, tile=8)
    rr, cc = np.mgrid[:80, :70].astype(np.float32)
    rr, cc = rr + warp[0], cc + warp[1]
    pd = (rr[..., None] - seeds[:, 0]) ** 2 + (cc[..., None] - seeds[:, 1]) ** 2 - weights
    assert (labels == pd.argmin(-1)).mean() > 0.999
    assert np.allclose(sqd, pd.min(-1) + weights[labels], atol=1e-2)


@pytest.mark.parametrize("rock", sorted(ROCKS))
def test_every_rock_simulates(rock):
    fld = simulate_field(rock, 96, 80, seed=1)
    assert fld.labels.shape == (96, 80) and fld.bse.shape == (96, 80) and fld.bse.dtype == np.float32
    assert 0.0 <= fld.bse.min() and fld.bse.max() <= 1.0
    present = {class_names()[k] for k in np.unique(fld.labels)}
    assert present <= set(ROCKS[rock].minerals()) and len(present) >= 3
    if rock == "grain-mount":
        assert (fld.labels == class_index("epoxy")).mean() > 0.2


def test_source_contract_and_determinism():
    src = DATA_SOURCES.create(
        "sem-synthetic", num_fields=5, size=64, rocks=("granite", "carbonate"), eds_fraction=0.01, seed=3
    )
    assert len(src) == 5
    s = src[1]
    assert s.image.shape == (1, 64, 64) and s.image.dtype == torch.float32
    assert s.point_coords.shape == (41, 2) and s.point_features.shape == (41, 2048)
    assert s.target.dtype == torch.long and s.meta.class_names == class_names()
    assert s.meta.domain.simulation.rock == "carbonate" and s.meta.domain.energy_axis == EnergyAxis()
    rc = s.point_coords.long()
    assert torch.equal(s.point_target, s.target[rc[:, 0], rc[:, 1]])
    again = DATA_SOURCES.create(
        "sem-synthetic", num_fields=5, size=64, rocks=("granite", "carbonate"), eds_fraction=0.01, seed=3
    )
    for a, b in ((src[1], again[1]), (src[4], again[4])):
        assert torch.equal(a.image, b.image) and torch.equal(a.point_features, b.point_features)
        assert torch.equal(a.target, b.target) and torch.equal(a.point_coords, b.point_coords)
    other = DATA_SOURCES.create("sem-synthetic", num_fields=5, size=64, rocks=("granite", "carbonate"), seed=4)
    assert not torch.equal(other[1].target, s.target)
    assert src[-1].meta.name == src[4].meta.name
    with pytest.raises(IndexError):
        src[5]


def test_fraction_range_draws_a_budget_per_field():
    src = DATA_SOURCES.create("sem-synthetic", num_fields=40, size=100, eds_fraction=(0.001, 0.05), seed=1)
    counts = [src.points_of(i) for i in range(40)]
    assert min(counts) >= 10 and max(counts) <= 500 and len(set(counts)) > 20
    assert min(counts) < 40 and max(counts) > 200  # log-uniform: both ends are visited
    assert src[3].num_points == counts[3] == src.points_of(3)  # deterministic per field


def test_mineral_shuffle_keeps_the_texture_and_swaps_the_minerals():
    """A shuffled field: the unshuffled field's phase boundaries, other library minerals (epoxy and pores kept),
    its BSE levels and spectra those of the new minerals; unshuffled fields are untouched."""
    from fusionseg.sem.minerals import class_names

    names = class_names()
    plain = DATA_SOURCES.create("sem-synthetic", num_fields=8, size=40, rocks=["grain-mount"], seed=4)
    mixed = DATA_SOURCES.create("sem-synthetic", num_fields=8, size=40, rocks=["grain-mount"], seed=4,
                                mineral_shuffle=0.5)  # fmt: skip
    swapped = [i for i in range(8) if mixed.minerals_of(i)]
    assert 0 < len(swapped) < 8
    for i in range(8):
        a, b = plain.field(i), mixed.field(i)
        if i not in swapped:
            assert np.array_equal(a.labels, b.labels) and np.array_equal(a.bse, b.bse)
            continue
        lut = mixed.minerals_of(i)
        ids = np.array([names.index(lut.get(n, n)) for n in names])  # global id -> id after the swap
        expect = ids[a.labels]
        assert np.array_equal(b.labels, expect) and not np.array_equal(a.labels, b.labels)
        assert "epoxy" not in lut and "epoxy" in {names[k] for k in np.unique(b.labels)}
        assert len(set(lut.values())) == len(lut)  # distinct minerals stay distinct phases
        s = mixed[i]
        assert torch.equal(s.target, torch.from_numpy(b.labels).long())


def test_a_list_of_samplers_places_each_fields_points_by_one_of_them():
    """Training for every placement a user may choose: each field's points come from one sampler of the list,
    the same one on every draw of that field, and the field itself (phase map, BSE) does not depend on it."""
    mixed = DATA_SOURCES.create("sem-synthetic", num_fields=12, size=48, rocks=["granite"], seed=3,
                                sampler=["random", "grid"], eds_fraction=0.02)  # fmt: skip
    alone = {name: DATA_SOURCES.create("sem-synthetic", num_fields=12, size=48, rocks=["granite"], seed=3,
                                       sampler=name, eds_fraction=0.02) for name in ("random", "grid")}  # fmt: skip
    used = set()
    for i in range(12):
        name = "grid" if type(mixed.sampler_of(i)).__name__ == "GridSampler" else "random"
        used.add(name)
        assert torch.equal(mixed[i].point_coords, alone[name][i].point_coords)
        assert torch.equal(mixed[i].image, alone[name][i].image)
    assert used == {"random", "grid"}
    with pytest.raises(SimulationError, match="sampler"):
        DATA_SOURCES.create("sem-synthetic", num_fields=1, size=16, sampler=[])


def test_datamodule_trains_on_a_fraction_range_and_tests_at_one_fraction():
    from fusionseg.data.datamodule import FusionSegDataModule

    dm = FusionSegDataModule(
        "sem-synthetic",
        source_kwargs={"size": 100},
        train_fields=6,
        test_fields=2,
        eds_fraction=0.01,
        train_eds_fraction=[0.001, 0.05],
    )
    assert len({s.num_points for s in dm.dataset("train")}) > 1
    assert {s.num_points for s in dm.dataset("test")} == {100}
    with pytest.raises(ValueError, match="train_eds_fraction"):
        FusionSegDataModule("sem-synthetic", train_eds_fraction=[0.05, 0.001])


def test_evaluation_splits_use_identified_point_labels_not_the_simulators():
    from dataclasses import replace

    from fusionseg.data.datamodule import FusionSegDataModule
    from fusionseg.sem.identify import best_library_labels, with_identified_point_labels

    kwargs = {"source_kwargs": {"size": 64, "rocks": ["granite", "grain-mount"]}, "train_fields": 1, "test_fields": 4}
    kwargs["source"] = "sem-synthetic"
    identified, given = FusionSegDataModule(**kwargs, point_labels="identified"), FusionSegDataModule(**kwargs)
    truth = [s.point_target for s in given.dataset("test")]
    labels = [s.point_target for s in identified.dataset("test")]
    for s, y in zip(identified.dataset("test"), labels, strict=True):
        meta = s.meta
        assert torch.equal(y, best_library_labels(s.point_features, meta.class_names, meta.domain.energy_axis))
    agree = torch.cat(labels) == torch.cat(truth)
    assert 0.9 < agree.float().mean() <= 1.0  # an instrument's labels: mostly, not by construction, the truth
    assert torch.equal(identified.dataset("train")[0].point_target, given.dataset("train")[0].point_target)
    with pytest.raises(ValueError, match="point_labels"):
        FusionSegDataModule("sem-synthetic", point_labels="true")
    bare = replace(given.dataset("test")[0], meta=replace(given.dataset("test")[0].meta, domain=None))
    with pytest.raises(ValueError, match="point_labels=given"):
        with_identified_point_labels(bare)


def test_dense_cube_for_small_fields():
    src = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=24, sampler="stratified", counts_per_spectrum=200)
    fld = src.field(0)
    cube = fld.dense_spectra()
    assert cube.shape == (24, 24, 2048) and cube.sum(-1).mean() > 100
    pts = np.array([[0, 0], [23, 5]])
    assert fld.expected_spectra_at(pts).shape == (2, 2048)
    with pytest.raises(SimulationError, match="too large"):
        simulate_field("granite", 400, 400, spectra=src.spectra).dense_spectra()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beam_energy_kev": 0.0}, "beam_energy_kev"),
        ({"beam_energy_kev": -5}, "beam_energy_kev"),
        ({"eds_fraction": 0.0}, "eds_fraction"),
        ({"eds_fraction": 1.5}, "eds_fraction"),
        ({"eds_fraction": (0.05, 0.01)}, "eds_fraction"),
        ({"eds_fraction": (0.0, 0.01)}, "eds_fraction"),
        ({"size": 0}, "size"),
        ({"counts_per_spectrum": 0}, "counts_per_spectrum"),
        ({"beam_energy_kev": 0.4}, "no X-ray line"),  # quartz: O K edge 0.54 keV, Si K 1.84 keV
        ({"sampler": "nope"}, "point sampler"),
        ({"mineral_shuffle": 1.5}, "mineral_shuffle"),
    ],
)
def test_impossible_settings_raise(kwargs, match):
    with pytest.raises((SimulationError, KeyError), match=match):
        DATA_SOURCES.create("sem-synthetic", **{"num_fields": 2, "size": 16, **kwargs})


def test_disk_roundtrip_and_folder_source(tmp_path):
    src = DATA_SOURCES.create("sem-synthetic", num_fields=2, size=32, rocks=("basalt",), seed=2)
    s = src[0]
    p = save_sample(s, tmp_path / "one")
    assert p.suffix == ".npz"
    t = load_sample(p)
    assert torch.equal(t.image, s.image) and torch.equal(t.point_features, s.point_features)
    assert torch.equal(t.target, s.target) and torch.equal(t.point_target, s.point_target)
    assert t.meta.class_names == s.meta.class_names and t.meta.domain.energy_axis == s.meta.domain.energy_axis
    assert t.meta.domain.simulation == s.meta.domain.simulation and t.meta.domain.simulation.rock == "basalt"
    assert t.meta.name == s.meta.name
    files = write_dataset([src[0], src[1]], tmp_path / "ds")
    folder = DATA_SOURCES.create("sample-folder", root=tmp_path / "ds")
    assert len(folder) == 2 == len(files) and torch.equal(folder[1].image, src[1].image)


def test_simulate_to_folder_writes_fields_and_preview(tmp_path):
    out = simulate_to_folder("sulfide-ore", n=2, size=48, out=tmp_path / "sim", seed=5)
    assert sorted(p.name for p in out.glob("*.npz")) == [
        "00000_sulfide-ore-s5-00000.npz",
        "00001_sulfide-ore-s5-00001.npz",
    ]
    assert (out / "index.json").is_file() and (out / "preview.png").stat().st_size > 10_000
    assert load_sample(next(out.glob("00001*.npz"))).num_points == round(0.01 * 48 * 48)


def test_attenuation_tables_equal_xraydb_elam() -> None:
    """The simulator's mass attenuation grid evaluates xraydb's Elam spline at once (`_elam_spline`): the values are
    xraydb's own, bit for bit, for light to heavy elements."""
    import xraydb

    from fusionseg.sem import physics

    for element in ("H", "O", "Na", "Si", "Fe", "Zr", "Pb", "U"):
        reference = np.log(np.maximum(xraydb.mu_elam(element, np.exp(physics._LOG_E_GRID)), 1e-30))
        assert np.array_equal(physics._log_mu_element(element), reference), element
