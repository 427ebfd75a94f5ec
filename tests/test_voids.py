"""The voids stage (`fusionseg.sem.segment.voids`): pores and epoxy from the BSE image, confirmed by the points."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from fusionseg.sample import IGNORE_INDEX
from fusionseg.sem.data.synthetic.field import simulate_field
from fusionseg.sem.data.synthetic.rocks import get_rock
from fusionseg.sem.minerals import class_names
from fusionseg.sem.segment.voids import apply_voids, find_voids

NAMES = class_names()


def _void(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, [NAMES.index("pore"), NAMES.index("epoxy")])


def _points(f, n: int, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    coords = np.random.default_rng(seed).random((n, 2)) * (np.array(f.shape) - 1)
    return coords, torch.from_numpy(f.spectra_at(coords))


def test_a_field_without_pores_loses_no_pixel() -> None:
    rock = replace(get_rock("granite"), name="granite-without-pores", pore_fraction=0.0)
    for seed in range(3):
        f = simulate_field(rock, 192, seed=seed)
        finding, _ = find_voids(f.bse, *_points(f, 360, seed), f.spectra.axis)
        assert finding is None
    assert find_voids(np.full((40, 40), 0.3, np.float32), np.zeros((0, 2)), torch.zeros(0, 8))[0] is None


def test_pores_are_found_by_the_bse_alone_when_no_point_hits_them() -> None:
    f = simulate_field("basalt", 192, seed=3)
    truth = _void(f.labels)
    finding, _ = find_voids(f.bse, np.zeros((0, 2)), torch.zeros(0, f.spectra.axis.size), f.spectra.axis)
    assert finding is not None and not finding.mode.mount
    tp = (finding.mask & truth).sum()
    assert tp / truth.sum() > 0.9 and tp / finding.mask.sum() > 0.9


def test_a_grain_mount_is_epoxy_confirmed_by_carbon_rich_spectra() -> None:
    f = simulate_field("grain-mount", 192, seed=1)
    truth = _void(f.labels)
    finding, _ = find_voids(f.bse, *_points(f, 370), f.spectra.axis)
    assert finding is not None and finding.mode.mount and finding.points_confirming > 0.9 * finding.points_inside
    tp = (finding.mask & truth).sum()
    assert tp / truth.sum() > 0.95 and tp / finding.mask.sum() > 0.95
    labels, conf = np.zeros(f.shape, np.int64), np.zeros(f.shape, np.float32)
    labels[0, 0] = IGNORE_INDEX  # not measured stays so
    stray = np.argwhere(~finding.mask)[0]
    labels[tuple(stray)] = 1  # the model's "epoxy" where the BSE says sample: the nearest mineral's label instead
    names = apply_voids(labels, conf, ("quartz", "epoxy"), finding)
    assert names[:2] == ("quartz", "epoxy") and set(names[1:]) <= {"epoxy", "pore"} and labels[0, 0] == IGNORE_INDEX
    assert labels[tuple(stray)] == 0
    measured = np.ones(f.shape, bool)
    measured[0, 0] = False
    assert (np.isin(labels, [1, 2]) == (finding.mask & measured)).all() and (conf[labels > 0] == 1).all()


def test_a_dark_mineral_mode_is_not_epoxy_when_its_spectra_say_mineral() -> None:
    f = simulate_field("grain-mount", 192, seed=1)
    coords, spectra = _points(f, 370)
    quartz = simulate_field("granite", 192, seed=0)  # the same dark mode, but every spectrum a mineral's
    spectra = torch.from_numpy(quartz.spectra_at(np.full((370, 2), 10.0)))
    finding, note = find_voids(f.bse, coords, spectra, f.spectra.axis)
    assert finding is None or not finding.mode.mount
    assert note is not None and "spectra there are void or carbon-rich" in note
