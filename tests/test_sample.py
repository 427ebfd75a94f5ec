import pytest
import torch

from fusionseg import Sample, SampleError, SampleMeta
from fusionseg.sem.meta import EnergyAxis, SemMeta


def make(**overrides):
    kwargs = dict(
        image=torch.rand(1, 8, 10),
        point_coords=torch.tensor([[0.0, 0.0], [7.0, 9.0]]),
        point_features=torch.rand(2, 16),
        meta=SampleMeta(class_names=("a", "b"), domain=SemMeta(energy_axis=EnergyAxis(size=16))),
        target=torch.zeros(8, 10, dtype=torch.long),
        point_target=torch.tensor([0, 1]),
    )
    kwargs.update(overrides)
    return Sample(**kwargs)


def test_valid_sample_and_repr():
    s = make()
    assert (s.height, s.width, s.num_points, s.num_classes) == (8, 10, 2, 2)
    assert "points=2" in repr(s)


def test_energy_axis_channels():
    axis = EnergyAxis()
    assert axis.energies_ev()[47].item() == pytest.approx(0.0)
    assert axis.channel(1740.0) == pytest.approx(221.0)


@pytest.mark.parametrize(
    "override, fragment",
    [
        (dict(image=torch.rand(8, 10)), "add a channel axis"),
        (dict(image=torch.full((1, 8, 10), float("nan"))), "NaN"),
        (dict(point_coords=torch.tensor([[0.0, 0.0], [8.0, 0.0]])), "outside the 8x10 image"),
        (dict(point_coords=torch.zeros(2, 3)), "(N, 2)"),
        (dict(point_features=torch.rand(3, 16)), "N = 2 rows"),
        (dict(point_features=torch.rand(2, 15)), "meta.domain.energy_axis.size"),
        (dict(target=torch.zeros(8, 9, dtype=torch.long)), "target must have shape"),
        (dict(point_target=torch.tensor([0, 5])), "outside 0..1"),
    ],
)
def test_bad_input_names_the_field(override, fragment):
    with pytest.raises(SampleError, match=None) as err:
        make(**override)
    assert fragment in str(err.value)


def test_ignore_index_allowed_and_to_device():
    s = make(point_target=torch.tensor([-1, 1]))
    moved = s.to("cpu")
    assert moved.point_target.tolist() == [-1, 1] and moved is not s
