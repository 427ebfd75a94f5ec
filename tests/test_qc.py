"""Quality control of segment results: agreement with the measured points, held-out check, warnings, coverage."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fusionseg.sample import IGNORE_INDEX, SampleMeta
from fusionseg.sem.export.qc import agreement, honour_points, point_calls, quality_checks

NAMES = ("quartz", "albite", "unknown")


def _calls(labels):
    coords = np.array([[0, 0], [0, 3], [3, 0], [3, 3]], dtype=np.float32)
    return point_calls(coords, np.array(labels), NAMES, (4, 4), np.zeros(4, bool))


def test_agreement_counts_only_confident_points_and_honouring_fixes_them():
    labels = np.zeros((4, 4), np.int64)  # all quartz
    calls = _calls([0, 1, 2, IGNORE_INDEX])  # quartz, albite, unknown, unlabelled
    a = agreement(labels, NAMES, calls)
    assert (a["points"], a["agreeing"], a["share"], a["disagreeing_points"]) == (2, 1, 0.5, [1])
    honoured = honour_points(labels, NAMES, calls)
    assert honoured[0, 3] == 1 and (honoured != labels).sum() == 1  # only the albite point's pixel changed
    assert agreement(honoured, NAMES, calls)["share"] == 1.0


def test_quality_checks_warn_about_lost_phases_and_single_phase_maps():
    labels = np.zeros((8, 8), np.int64)
    coords = np.array([[1, 1], [2, 2], [5, 5], [6, 6], [7, 7]], dtype=np.float32)
    calls = point_calls(coords, np.array([0, 0, 1, 1, 2]), NAMES, (8, 8), np.array([0, 0, 0, 0, 1], bool))
    qc = quality_checks(labels, NAMES, calls)
    assert qc["phases_absent_from_map"] == ["albite"]
    assert qc["unclassified_share"] == 0.2 and qc["void_share"] == 0.2
    assert any("albite (2 points)" in w for w in qc["warnings"])
    assert any("100.0 % quartz although the points show 2 phases" in w for w in qc["warnings"])
    final = honour_points(labels, NAMES, calls)
    qc = quality_checks(final, NAMES, calls, model_labels=labels)
    assert qc["phases_absent_from_map"] == [] and qc["phases_absent_from_model_map"] == ["albite"]
    assert any("not mapped by the model: albite" in w and "only at its measured pixels" in w for w in qc["warnings"])


@pytest.fixture(scope="module")
def field():
    from fusionseg.registry import DATA_SOURCES

    src = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=64, rocks=["granite"], eds_fraction=0.02, seed=5)
    return src[0]


def test_shipped_weights_map_honours_points_and_reports_qc(field):
    from fusionseg.pretrain import DEFAULT_WEIGHTS
    from fusionseg.sem.segment import SegmentConfig, segment_field

    s = replace(field, point_target=None, target=None)
    r = segment_field(s, DEFAULT_WEIGHTS, SegmentConfig(progress=False))
    qc = r.qc
    assert qc["points"] == s.num_points and qc["points_identified"] >= 0.9 * s.num_points
    assert qc["agreement"]["share"] == 1.0  # honoured
    assert 0.6 <= qc["agreement_model"]["share"] <= 1.0
    held = qc["held_out"]
    assert held["points"] == round(0.1 * qc["points_identified"]) and 0.0 <= held["share"] <= 1.0
    changed = int((r.labels != r.model_labels).sum())
    assert changed == qc["agreement_model"]["points"] - qc["agreement_model"]["agreeing"]
    off = segment_field(s, DEFAULT_WEIGHTS, SegmentConfig(progress=False, honour_points=False))
    assert off.qc["agreement"]["share"] == off.qc["agreement_model"]["share"] == qc["agreement_model"]["share"]


def test_pixels_outside_the_eds_area_are_not_measured(field):
    from fusionseg.pretrain import DEFAULT_WEIGHTS
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.data.readers import dense_sample
    from fusionseg.sem.segment import SegmentConfig, prepare_points, segment_field

    full = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=32, rocks=["granite"], eds_fraction=1.0, seed=5)[0]
    rc = full.point_coords.round().long().numpy()
    cube = np.zeros((32, 32, full.point_features.shape[1]), np.float32)
    cube[rc[:, 0], rc[:, 1]] = full.point_features.numpy()
    cube[:, 20:] = 0  # EDS acquired over the left 20 columns only
    meta = SampleMeta(domain=full.meta.domain, name="partial")
    s = prepare_points(dense_sample(full.image[0].numpy(), cube, meta), 0.2, None, "random", 0)
    r = segment_field(s, DEFAULT_WEIGHTS, SegmentConfig(progress=False))
    labels = r.labels.numpy()
    assert (labels[:, 20:] == IGNORE_INDEX).all() and (labels[:, :20] != IGNORE_INDEX).all()
    assert np.isnan(r.confidence.numpy()[:, 20:]).all()
    assert any("outside the EDS-acquired area" in n for n in r.info["notes"])
    wide = segment_field(s, DEFAULT_WEIGHTS, SegmentConfig(progress=False, extrapolate=True))
    assert (wide.labels.numpy() != IGNORE_INDEX).all()


BCF30 = (
    Path(__file__).resolve().parents[1].parent
    / "shared/data/real/bruker/30x30_instructively_packed_16bit_compressed.bcf"
)


@pytest.mark.skipif(not BCF30.is_file(), reason=f"real Bruker test file absent ({BCF30})")
def test_phase_hspy_carries_the_input_original_metadata(tmp_path):
    from rsciio.hspy import file_reader

    from fusionseg.export.writers import write_hspy_phase_map
    from fusionseg.sem.data.readers import read_input

    s = read_input(BCF30)
    original = s.meta.domain.original_metadata
    assert "Microscope" in original
    path = write_hspy_phase_map(tmp_path / "p.hspy", np.zeros((30, 30), np.int64), ("a",), s.meta.domain.nav_axes,
                                original_metadata=original)  # fmt: skip
    (signal,) = file_reader(str(path))
    assert set(original) <= set(signal["original_metadata"])
    assert signal["axes"][0]["units"] == "µm"


def test_thin_evidence_is_a_warning_with_its_number() -> None:
    names = ("quartz", "albite")
    labels = np.zeros((30, 30), np.int64)
    coords = np.array([[3.0 * i, 3.0 * i] for i in range(9)])
    calls = point_calls(coords, np.zeros(9, np.int64), names, labels.shape, np.zeros(9, bool))
    failing = {"share": 0.0, "agreeing": 0, "points": 8, "how": "8 withheld"}
    warnings = quality_checks(labels, names, calls, held_out=failing)["warnings"]
    assert any("only 9 spectra for 900 pixels" in w for w in warnings)
    assert any("held-out check failed: 0 of 8 withheld points" in w for w in warnings)
    many = np.argwhere(np.ones((30, 30), bool))[::20].astype(float)  # 45 points, 5 % of the pixels
    calls = point_calls(many, np.zeros(len(many), np.int64), names, labels.shape, np.zeros(len(many), bool))
    passing = {"share": 0.75, "agreeing": 6, "points": 8, "how": "8 withheld"}
    assert quality_checks(labels, names, calls, held_out=passing)["warnings"] == []
    big = np.zeros((300, 300), np.int64)  # 45 points are 0.05 % of 90,000 pixels: too few for the field
    assert any("only 45 spectra" in w for w in quality_checks(big, names, calls)["warnings"])


def test_weak_clusters_are_a_warning_not_a_note() -> None:
    from types import SimpleNamespace

    from fusionseg.sem.segment.check import promote_weak_clusters
    from fusionseg.sem.segment.identify import clustering_notes

    points = SimpleNamespace(clustering={"silhouette_by_k": {2: 0.12, 3: 0.1}, "clusters": 2})
    weak = clustering_notes(points)
    result = SimpleNamespace(point_labels=points, info={"notes": ["other", *weak]}, qc={"warnings": []})
    promote_weak_clusters(result)
    assert result.info["notes"] == ["other"] and result.qc["warnings"] == weak and "0.12" in weak[0]
