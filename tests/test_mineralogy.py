"""Automated-mineralogy statistics: modal area/mass %, grains, association, particles; report files."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from fusionseg.sample import IGNORE_INDEX, SampleMeta
from fusionseg.sem.export.mineralogy import (
    association_matrix,
    grain_statistics,
    is_grain_mount,
    modal_mineralogy,
    not_sample,
    particle_statistics,
    pixel_size_um,
)
from fusionseg.sem.meta import SemMeta

NAMES = ("quartz", "galena", "epoxy", "unknown")


def test_modal_area_and_mass_percent_with_unclassified_and_not_measured_rows():
    labels = np.zeros((10, 10), np.int64)
    labels[:, 5:] = 1  # half quartz (2.65 g/cm3), half galena (7.60)
    labels[0, 0] = 3  # one unclassified pixel
    labels[9, :] = IGNORE_INDEX  # a row outside the EDS area
    rows = {r["phase"]: r for r in modal_mineralogy(labels, NAMES, 2.0)}
    assert rows["quartz"]["pixels"] == 44 and rows["galena"]["pixels"] == 45
    assert rows["unclassified"]["pixels"] == 1 and rows["unclassified"]["area_percent"] == pytest.approx(100 / 90, 1e-3)
    assert rows["quartz"]["area_percent"] == pytest.approx(100 * 44 / 90, abs=1e-3)
    mass = 44 * 2.65 + 45 * 7.60
    assert rows["galena"]["mass_percent"] == pytest.approx(100 * 45 * 7.60 / mass, abs=1e-3)
    assert rows["quartz"]["area_um2"] == pytest.approx(44 * 4.0)
    assert rows["not measured"]["pixels"] == 10 and rows["not measured"]["area_percent"] is None
    assert "unknown" not in rows


def test_phases_named_by_composition_get_the_identification_librarys_density():
    """A phase only the composition identifier names (epidote, 3.45 g/cm3) still has a mass %; a twin group
    ('magnetite/hematite/goethite': 5.2, 5.3 and 4.3 g/cm3) and a cluster do not."""
    names = ("quartz", "epidote", "magnetite/hematite/goethite", "cluster-0")
    labels = np.repeat(np.arange(4), 25).reshape(10, 10)
    rows = {r["phase"]: r for r in modal_mineralogy(labels, names, None)}
    assert rows["epidote"]["density_g_cm3"] == pytest.approx(3.45, abs=0.1)
    assert rows["epidote"]["mass_percent"] is not None and rows["quartz"]["mass_percent"] is not None
    assert rows["magnetite/hematite/goethite"]["density_g_cm3"] is None and rows["cluster-0"]["density_g_cm3"] is None


def test_pores_and_epoxy_are_one_not_sample_row_outside_the_percentages():
    names = ("quartz", "galena", "epoxy", "pore")
    labels = np.zeros((10, 10), np.int64)
    labels[:, 5:] = 1
    labels[0, :] = 2  # 10 px epoxy
    labels[1, :2] = 3  # 2 px pores
    rows = {r["phase"]: r for r in modal_mineralogy(labels, names, None)}
    assert "pore" not in rows and "epoxy" not in rows
    assert rows["not sample"]["pixels"] == 12 and rows["not sample"]["area_percent"] is None
    assert rows["quartz"]["area_percent"] + rows["galena"]["area_percent"] == pytest.approx(100.0, abs=1e-3)
    assert rows["galena"]["mass_percent"] + rows["quartz"]["mass_percent"] == pytest.approx(100.0, abs=1e-3)
    assert not_sample(labels, names) == {"pixels": {"epoxy": 10, "pore": 2}, "field_percent": 12.0}


def test_grains_and_association_in_pixels_when_uncalibrated():
    labels = np.ones((8, 8), np.int64)  # galena matrix
    labels[1:3, 1:3] = 0  # two 2x2 quartz grains
    labels[5:7, 5:7] = 0
    meta = SampleMeta(domain=SemMeta(source_path="folder"))  # a folder input: no calibration
    assert pixel_size_um(meta) is None
    grains = {g["phase"]: g for g in grain_statistics(labels, NAMES, None)}
    assert grains["quartz"]["grains"] == 2 and grains["galena"]["grains"] == 1
    assert grains["quartz"]["d50_px"] == pytest.approx(2 * np.sqrt(4 / np.pi), abs=1e-3)
    assoc = association_matrix(labels, NAMES, None)
    assert assoc[0, 1] == assoc[1, 0] == 16  # each 2x2 grain has 8 unit edges with the matrix
    assert assoc[0, 0] == 0 and assoc[2].sum() == 0
    axes = [{"scale": 0.5, "units": "µm"}, {"scale": 0.5, "units": "µm"}]
    assert pixel_size_um(SampleMeta(domain=SemMeta(nav_axes=axes))) == 0.5
    assert pixel_size_um(SampleMeta(domain=SemMeta(nav_axes=[{"scale": 1.0, "units": "<undefined>"}] * 2))) is None


def test_particles_in_epoxy_get_a_liberation_class():
    labels = np.full((12, 12), 2, np.int64)  # epoxy
    labels[1:4, 1:4] = 1  # a liberated galena particle
    labels[6:10, 6:8] = 0  # a binary quartz-galena particle
    labels[6:10, 8:10] = 1
    assert is_grain_mount(labels, NAMES)
    parts = sorted(particle_statistics(labels, NAMES, 1.5), key=lambda p: p["pixels"])
    assert [p["liberation"] for p in parts] == ["liberated", "binary"]
    assert parts[0]["main_phase"] == "galena" and parts[0]["main_phase_percent"] == 100.0
    assert parts[1]["pixels"] == 16 and parts[1]["diameter_um"] == pytest.approx(
        1.5 * 2 * np.sqrt(16 / np.pi), abs=1e-3
    )


def test_segment_outputs_carry_qc_and_mineralogy(tmp_path):
    from fusionseg.pretrain import DEFAULT_WEIGHTS
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.export.report import write_segment_outputs
    from fusionseg.sem.segment import SegmentConfig, segment_field

    src = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=64, rocks=["grain-mount"], eds_fraction=0.03, seed=3)
    s = replace(src[0], point_target=None, target=None)
    result = segment_field(s, DEFAULT_WEIGHTS, SegmentConfig(progress=False))
    files = write_segment_outputs(tmp_path, result, input_path="simulated")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["qc"]["agreement"]["share"] == 1.0 and "held_out" in summary["qc"]
    m = summary["mineralogy"]
    assert m["pixel_size_um"] == s.meta.pixel_size_um and m["grain_mount"]
    modal = list(csv.DictReader((tmp_path / files["modal_csv"]).open()))
    assert [r["phase"] for r in modal][-1] == "unclassified"
    assert sum(float(r["area_percent"] or 0) for r in modal) == pytest.approx(100.0, abs=0.01)
    assert [r["area_percent"] for r in modal if r["phase"] == "not sample"] == [""]  # the mount is not sample
    assert "epoxy" not in [r["phase"] for r in modal] and m["not_sample"]["field_percent"] > 20
    assert sum(float(r["mass_percent"] or 0) for r in modal) == pytest.approx(100.0, abs=0.01)
    assert (tmp_path / files["particles_csv"]).is_file() and m["liberation"]
    page = (tmp_path / "report.html").read_text()
    assert "Quality control" in page and "Modal mineralogy" in page and files["overlay"] in page
    report = (tmp_path / "report.md").read_text()
    assert "map agrees with its measured points: 100.0 %" in report and "## Association" in report
    # calibrated TIFF: resolution tags in pixels per centimetre
    import tifffile
    from rsciio.hspy import file_reader

    with tifffile.TiffFile(tmp_path / files["phases_tiff"]) as tif:
        tags = tif.pages[0].tags
        x = tags["XResolution"].value
        assert tags["ResolutionUnit"].value == 3 and x[0] / x[1] == pytest.approx(1e4 / s.meta.pixel_size_um, rel=1e-4)
    phases, uncertainty = file_reader(str(tmp_path / files["hspy"]))
    assert phases["data"].shape == uncertainty["data"].shape == (64, 64)
    assert np.nanmax(uncertainty["data"]) <= 1.0 and "uncertainty" in uncertainty["metadata"]["General"]["title"]
    (spectra,) = file_reader(str(tmp_path / files["spectra_hspy"]))
    assert spectra["metadata"]["Signal"]["signal_type"] == "EDS_SEM"
    energy = spectra["axes"][-1]
    assert energy["units"] == "keV" and energy["scale"] == pytest.approx(s.meta.domain.energy_axis.scale_ev / 1000)
    assert spectra["data"].shape == (len(spectra["metadata"]["Sample"]["phases"]), s.meta.domain.energy_axis.size)


def test_grain_diameters_equal_regionprops() -> None:
    """Grain sizes come from the component areas at once; they equal scikit-image's per-grain
    ``equivalent_diameter_area`` bit for bit (8-connected, as the D10/D50/D90 table uses)."""
    from skimage.measure import label, regionprops

    from fusionseg.sem.export.mineralogy import _diameters

    mask = np.random.default_rng(0).random((200, 200)) > 0.6
    reference = np.array([r.equivalent_diameter_area for r in regionprops(label(mask, connectivity=2))])
    assert len(reference) > 500 and np.array_equal(_diameters(mask), reference)


def test_label_counts_equal_numpy_unique_without_the_ignored_pixels() -> None:
    from fusionseg.sample import IGNORE_INDEX, LABEL_BLOCK, label_counts

    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 7, size=(3, LABEL_BLOCK // 2 + 5)).astype(np.int64)  # spans several blocks
    labels[labels == -1] = IGNORE_INDEX
    ids, counts = np.unique(labels[labels != IGNORE_INDEX], return_counts=True)
    expected = np.zeros(9, dtype=np.int64)
    expected[ids] = counts
    assert np.array_equal(label_counts(labels, 9), expected)
    assert np.array_equal(label_counts(labels), expected[:7])  # as long as the largest id needs
    assert np.array_equal(label_counts(np.full((4, 4), IGNORE_INDEX), 3), np.zeros(3))


def test_large_panels_are_drawn_subsampled_in_field_pixel_coordinates() -> None:
    """A field larger than `DISPLAY_PX` is handed to matplotlib subsampled, its axes still in the field's pixels (so
    points and scale bars land where they belong), and its legend lists every phase, however small."""
    from fusionseg.export.render import DISPLAY_PX, phase_map_figure

    labels = np.zeros((2 * DISPLAY_PX + 10, 2 * DISPLAY_PX + 10), dtype=np.int64)
    labels[5, 7] = 2  # one pixel: no subsampled panel shows it, the legend must
    labels[:, -3:] = IGNORE_INDEX
    fig = phase_map_figure({"phases": labels}, ("a", "b", "c"), points=np.array([[5.0, 7.0]]), pixel_size_um=1.0)
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    assert max(shown.shape[:2]) <= DISPLAY_PX
    assert ax.get_xlim() == (-0.5, labels.shape[1] - 0.5) and ax.get_ylim() == (labels.shape[0] - 0.5, -0.5)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "c"]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_grains_above_the_minimum_size_specks_counted_apart():
    from fusionseg.sem.export.mineralogy import MIN_GRAIN_PX, min_grain_px, mineralogy, speck_mask

    labels = np.ones((20, 20), np.int64)  # galena matrix
    labels[2:6, 2:6] = 0  # a 16 px quartz grain
    labels[10:13, 10:13] = 0  # a 9 px quartz grain
    labels[16, 16] = 0  # two quartz specks (1 px, 2 px)
    labels[2, 15:17] = 0
    labels[18, 2] = 2  # an epoxy speck: not sample, no grain row
    assert min_grain_px(None) == MIN_GRAIN_PX == 3 and min_grain_px(1.5) == 5 and min_grain_px(0.1) == 1000
    assert min_grain_px(1.5, "5") == 5 and min_grain_px(2.0, "12um2") == 3
    with pytest.raises(ValueError, match="calibrated"):
        min_grain_px(None, "12um2")
    grains = {g["phase"]: g for g in grain_statistics(labels, NAMES, None, 3)}
    assert grains["quartz"]["grains"] == 2 and grains["quartz"]["specks"] == 2 and "epoxy" not in grains
    assert grains["quartz"]["d50_px"] == pytest.approx(np.mean(np.sqrt(4 * np.array([9, 16]) / np.pi)), abs=1e-3)
    specks = speck_mask(labels, 3)
    assert specks.sum() == 4 and specks[16, 16] and specks[18, 2]
    assoc = association_matrix(labels, NAMES, None, specks)
    assert assoc[0, 1] == 16 + 12  # the two grains' perimeters; the specks' 10 edges left out
    stats = mineralogy(labels, NAMES, None)
    assert stats["min_grain_px"] == 3 and stats["grains"][0]["specks"] == 2
    assert mineralogy(labels, NAMES, None, "10")["grains"][0]["grains"] == 1  # only the 16 px grain


def test_particle_liberation_ignores_specks():
    labels = np.full((12, 12), 2, np.int64)  # epoxy
    labels[1:6, 1:6] = 1  # a galena particle with a 1 px quartz speck
    labels[3, 3] = 0
    specks = np.zeros_like(labels, bool)
    specks[3, 3] = True
    assert particle_statistics(labels, NAMES, 1.0)[0]["main_phase_percent"] == 96.0
    part = particle_statistics(labels, NAMES, 1.0, specks=specks)[0]
    assert part["main_phase_percent"] == 100.0 and part["composition"] == "galena 100.0 %" and part["pixels"] == 25


def test_min_grain_flag_takes_pixels_or_square_microns():
    from fusionseg.sem.segment.command import parse_args

    assert parse_args(["x", "--out", "o", "--min-grain", "5"]).min_grain == "5"
    assert parse_args(["x", "--out", "o", "--min-grain", "12µm2"]).min_grain == "12um2"
    assert parse_args(["x", "--out", "o"]).min_grain is None
    for bad in ("0", "-2", "abc", "nan"):
        with pytest.raises(SystemExit):
            parse_args(["x", "--out", "o", "--min-grain", bad])
