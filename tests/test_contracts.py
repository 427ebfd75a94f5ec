"""Each contract of `fusionseg.contracts`, implemented by a plugin (tests/plugin_pkg), through every consumer."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "plugin_pkg"))
import fusionseg_toy_plugin  # noqa: E402  (registers toy-halves, toy-linear, toy-rows, toy-mlp)

from fusionseg.build import build  # noqa: E402
from fusionseg.contracts import Backbone, ContractError, DataSource, GraphBuilder, PointEncoder  # noqa: E402
from fusionseg.data.datamodule import FusionSegDataModule  # noqa: E402
from fusionseg.errors import FusionSegError  # noqa: E402
from fusionseg.models.fusion import FusionError  # noqa: E402
from fusionseg.models.module import FusionSegModule  # noqa: E402
from fusionseg.registry import BACKBONES, FUSIONS, GRAPH_BUILDERS  # noqa: E402

FUSION_NAMES = sorted({FUSIONS.get(n) for n in FUSIONS.names()}, key=lambda c: c.__name__)
SMALL = {"hidden_channels": 8, "log_phase_maps": False, "mask_unseen_classes": False}


def toy_batch(n: int = 2, split: str = "train") -> list:
    source = fusionseg_toy_plugin.ToyHalves(split=split, num_fields=n, seed=0, size=10)
    return [source[i] for i in range(n)]


def one_step(model: FusionSegModule, batch: list) -> dict[str, torch.Tensor]:
    """One optimiser step; returns each parameter's change."""
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    loss, _, _ = model._loss(batch)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {k: (v.detach() - before[k]).abs().max() for k, v in model.named_parameters()}


def test_plugin_parts_satisfy_the_protocols() -> None:
    source = fusionseg_toy_plugin.ToyHalves(split="val", num_fields=3, seed=1)
    assert isinstance(source, DataSource) and len(source) == 3
    assert isinstance(GRAPH_BUILDERS.create("toy-rows"), GraphBuilder)
    assert isinstance(BACKBONES.create("toy-mlp", in_channels=2, hidden_channels=4), Backbone)
    assert isinstance(fusionseg_toy_plugin.ToyLinear(in_dim=3), PointEncoder)


@pytest.mark.parametrize("fusion", FUSION_NAMES, ids=lambda c: c.__name__)
def test_plugin_backbone_trains_one_step_under_every_fusion(fusion: type) -> None:
    name = next(n for n in FUSIONS.names() if FUSIONS.get(n) is fusion)
    model = FusionSegModule(
        class_names=("dark", "bright"), point_channels=3, point_encoder="toy-linear", graph_builder="grid",
        fusion=name, backbone="toy-mlp", backbone_kwargs={"num_layers": 2}, **SMALL,
    )  # fmt: skip
    changed = one_step(model, toy_batch())
    backbone = {k: v for k, v in changed.items() if ".own." in k or ".nbr." in k}
    assert backbone, f"{name} built no toy-mlp backbone"
    assert any(v > 0 for v in backbone.values()), f"{name}: the plugin backbone received no gradient"


def test_plugin_builder_trains_one_step_under_the_default_fusion() -> None:
    model = FusionSegModule(
        class_names=("dark", "bright"), point_channels=3, graph_builder="toy-rows", backbone="sage", **SMALL
    )
    assert model.hparams.fusion == "cross-attention"  # the default fusion
    graph = model.build_graphs(toy_batch())
    assert graph["pixel"].num_nodes == 2 * 10 * 10 and graph["pixel", "near", "pixel"].edge_index.shape[1] == 2 * 180
    changed = one_step(model, toy_batch())
    assert max(v for k, v in changed.items() if k.startswith("fusion.backbone")) > 0


def test_plugin_source_encoder_builder_and_backbone_through_the_datamodule_and_the_cli(tmp_path) -> None:
    """The plugin source by class_path; the encoder's input width linked from the data; one fit step."""
    config = {
        "model": {"point_encoder": "toy-linear", "graph_builder": "toy-rows", "backbone": "toy-mlp",
                  "fusion": "late", **SMALL},
        "data": {"source": "fusionseg_toy_plugin.ToyHalves", "source_kwargs": {"size": 8}, "train_fields": 2,
                 "val_fields": 1, "test_fields": 1, "batch_size": 2, "eds_fraction": 0.2},
        "trainer": {"fast_dev_run": True, "default_root_dir": str(tmp_path), "logger": False},
    }  # fmt: skip
    built = build(config)
    assert built.model.point_encoder.in_dim == 3  # told by the data (point_channels), not configured
    dm = built.datamodule
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [2, 1, 1]
    train, val = dm.dataset("train")[0], dm.dataset("val")[0]
    assert train.meta.name == "train-0" and val.meta.name == "val-0"  # split told to the source
    assert not torch.equal(train.point_coords, val.point_coords)  # its own seed per split
    assert train.num_points == round(0.2 * 64)  # eds_fraction reaches a source naming point_fraction
    built.trainer.fit(built.model, datamodule=dm)
    assert built.trainer.global_step == 1


def test_datamodule_passes_only_the_contract_and_what_a_source_names() -> None:
    seen = {}

    class Minimal:
        def __init__(self, split: str, num_fields: int, seed: int) -> None:
            seen[split] = (num_fields, seed)

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):  # noqa: ANN204  (answers any index: never raises IndexError)
            return toy_batch(1)[0]

    sys.modules[__name__].Minimal = Minimal
    dm = FusionSegDataModule(source=f"{__name__}.Minimal", train_fields=3, val_fields=2, seed=5)
    dm.dataset("train"), dm.dataset("val")
    assert seen == {"train": (3, 5), "val": (2, 1005)}
    assert len(list(dm.dataset("train"))) == 2 and len(dm.training_spectra()) == 2 * toy_batch(1)[0].num_points


def test_broken_parts_are_named_with_the_contract() -> None:
    class NotASequence:
        def __init__(self, split: str, num_fields: int, seed: int) -> None: ...

    sys.modules[__name__].NotASequence = NotASequence
    with pytest.raises(FusionSegError, match="__len__ and __getitem__"):
        FusionSegDataModule(source=f"{__name__}.NotASequence").dataset("train")
    with pytest.raises(FusionSegError, match="cannot be imported"):
        FusionSegDataModule(source="no_such_package.Source").dataset("train")

    class Widthless(torch.nn.Module):
        def __init__(self, in_channels: int, hidden_channels: int, **_: object) -> None:
            super().__init__()

    sys.modules[__name__].Widthless = Widthless
    with pytest.raises(ContractError, match="out_channels"):
        FusionSegModule(class_names=("a", "b"), point_channels=3, backbone=f"{__name__}.Widthless")
    with pytest.raises(FusionError, match="grid_native"):
        FusionSegModule(class_names=("a", "b"), point_channels=3, fusion="hetero", backbone="cnn")


def test_file_sources_give_disjoint_splits(tmp_path) -> None:
    from fusionseg.data.io import write_dataset
    from fusionseg.registry import DATA_SOURCES

    write_dataset(toy_batch(10), tmp_path / "set")
    dm = FusionSegDataModule(source="sample-folder", source_kwargs={"root": str(tmp_path / "set")}, train_fields=10,
                             val_fields=10, test_fields=10, predict_fields=10)  # fmt: skip
    names = {s: {x.meta.name for x in dm.dataset(s)} for s in ("train", "val", "test", "predict")}
    assert [len(v) for v in names.values()] == [6, 1, 2, 1]
    assert set.union(*names.values()) == {f"train-{i}" for i in range(10)}  # every file once
    paths = [tmp_path / f"f{i}.bcf" for i in range(20)]  # eds-file / sem-folder read lazily: names suffice
    for source in ("eds-file", "sem-folder"):
        split = {s: DATA_SOURCES.create(source, paths=paths, split=s, num_fields=99).paths for s in names}
        assert sum(len(v) for v in split.values()) == 20 and len(set().union(*split.values())) == 20
        assert DATA_SOURCES.create(source, paths=paths, split="val", num_fields=1).paths == split["val"][:1]
    explicit = {"train": paths[:2], "val": paths[2:3]}
    assert DATA_SOURCES.create("eds-file", paths=explicit, split="val").paths == paths[2:3]
    with pytest.raises(FusionSegError, match="test split has no files"):
        DATA_SOURCES.create("eds-file", paths=explicit, split="test")


def test_sample_folder_trains_on_simulate_output(tmp_path) -> None:
    from fusionseg.cli import main

    assert main(["simulate", "--rock", "granite", "--n", "6", "--size", "24", "--out", str(tmp_path / "sim")]) == 0
    args = ["fit", "--data.source=sample-folder", f"--data.source_kwargs.root={tmp_path / 'sim'}",
            "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
            "--model.hidden_channels=8"]  # fmt: skip
    assert main(args) == 0


def test_shipped_config_trains_on_a_simulate_folder_with_the_documented_command(tmp_path, capsys) -> None:
    """The shipped config's simulator kwargs go when --data.source names another source (jsonargparse's
    class_path/init_args rule); the README's explicit command (kwargs replaced whole) works as well."""
    from fusionseg.cli import main
    from fusionseg.paths import DEFAULT_CONFIG

    assert main(["simulate", "--n", "6", "--size", "24", "--out", str(tmp_path / "sim")]) == 0
    common = ["fit", "--config", str(DEFAULT_CONFIG), "--data.source=sample-folder", "--trainer.fast_dev_run=true",
              f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]  # fmt: skip
    assert main([*common, f"--data.source_kwargs.root={tmp_path / 'sim'}"]) == 0
    assert "error" not in capsys.readouterr().err
    documented = [f"--data.source_kwargs={{root: {tmp_path / 'sim'}}}", "--data.train_source_kwargs=null"]
    assert main([*common, *documented]) == 0


def test_domain_metadata_round_trips_through_sample_files(tmp_path) -> None:
    """``meta.domain`` is stored by its DOMAINS name; version-1 files (SEM fields at the top level) still load;
    float (regression) targets stay float."""
    import json

    import numpy as np

    from fusionseg.data.io import load_sample, save_sample
    from fusionseg.sample import Sample, SampleMeta
    from fusionseg.sem.meta import EnergyAxis, SemMeta

    sem = SemMeta(EnergyAxis(16, 20.0, -100.0), beam_energy_kev=15.0, fwhm_mn_ka_ev=125.0)
    s = Sample(torch.rand(1, 6, 6), torch.tensor([[1.0, 2.0]]), torch.ones(1, 16), SampleMeta(domain=sem))
    back = load_sample(save_sample(s, tmp_path / "a"))
    assert back.meta.domain == sem
    with np.load(tmp_path / "a.npz") as z:
        arrays = dict(z)
    meta = json.loads(str(arrays["meta"]))
    domain = meta.pop("domain")
    assert domain["name"] == "sem"
    meta |= {"version": 1, "energy_axis": domain["energy_axis"], "beam_energy_kev": 15.0, "fwhm_mn_ka_ev": 125.0}
    np.savez(tmp_path / "v1.npz", **(arrays | {"meta": np.array(json.dumps(meta))}))
    assert load_sample(tmp_path / "v1.npz").meta.domain == sem
    values = torch.rand(2, 6, 6)
    reg = load_sample(save_sample(Sample(s.image, s.point_coords, s.point_features, target=values), tmp_path / "r"))
    assert reg.target.dtype == torch.float32 and torch.equal(reg.target, values)


def test_domain_side_data_round_trips_as_arrays_and_counts_in_memory_budgets(tmp_path) -> None:
    """SEM side data lives in typed `SemMeta` fields: sample files keep its arrays as arrays (``domain.<key>``) and
    its notes as JSON; a version-2 file with side data in ``extra`` still loads; memory budgets count the slot's
    arrays through the generic ``arrays()`` hook (`SampleMeta.nbytes`)."""
    import json

    import numpy as np

    from fusionseg.data.io import load_sample, save_sample
    from fusionseg.inference import field_bytes
    from fusionseg.sample import Sample, SampleMeta
    from fusionseg.sem.meta import EnergyAxis, SemMeta, Simulation

    rng, axis = np.random.default_rng(0), EnergyAxis(16, 20.0, -100.0)
    cube = rng.poisson(2, (6, 6, 16)).astype(np.uint16)
    mask, target = cube.sum(-1) > 30, rng.integers(0, 3, (6, 6))
    sem = SemMeta(axis, dense_spectra=cube, measured_mask=mask, original_target=target, source_path="f.bcf",
                  nav_axes=[{"scale": 0.5, "units": "µm"}] * 2, original_metadata={"Microscope": {"HV": 20}},
                  has_eds=True, sampler="grid", eds_fraction=0.05,
                  simulation=Simulation("granite", 3, 500.0, {"a": 1}))  # fmt: skip
    s = Sample(torch.rand(1, 6, 6), torch.tensor([[1.0, 2.0]]), torch.ones(1, 16), SampleMeta(domain=sem))
    path = save_sample(s, tmp_path / "a")
    with np.load(path) as z:
        assert sorted(k for k in z.files if k.startswith("domain.")) == [
            "domain.dense_spectra", "domain.measured_mask", "domain.original_target"]  # fmt: skip
        assert z["domain.dense_spectra"].dtype == np.uint16 and "dense_spectra" not in str(z["meta"])
    back = load_sample(path).meta.domain
    for key, value in sem.arrays().items():
        assert getattr(back, key).dtype == value.dtype and np.array_equal(getattr(back, key), value), key
    assert back.to_dict() == sem.to_dict() and back.simulation.rock == "granite" and back.nav_axes[0]["units"] == "µm"
    bare = replace(s, meta=SampleMeta(domain=SemMeta(axis)))
    assert field_bytes(s) - field_bytes(bare) == cube.nbytes + mask.nbytes + target.nbytes == s.meta.nbytes()
    assert SampleMeta(extra={"plugin_map": np.zeros(4)}).nbytes() == 32  # a plugin's arrays in extra still count
    old = {"format": "fusionseg-sample", "version": 2, "class_names": [], "pixel_size_um": 1.0, "name": "old",
           "domain": {"name": "sem", "energy_axis": vars(axis), "beam_energy_kev": 20.0, "fwhm_mn_ka_ev": 130.0,
                      "encoded": False}, "extra": {"rock": "basalt", "seed": 1}}  # fmt: skip
    np.savez(tmp_path / "old.npz", image=np.zeros((1, 4, 4), np.float32), point_coords=np.zeros((0, 2)),
             point_features=np.zeros((0, 16), np.float32), meta=np.array(json.dumps(old)))  # fmt: skip
    loaded = load_sample(tmp_path / "old.npz").meta
    assert loaded.domain == SemMeta(axis) and loaded.domain.dense_spectra is None and loaded.extra["rock"] == "basalt"


def test_checkpoints_before_point_context_are_migrated() -> None:
    from fusionseg.models.module import migrate_hparams

    old = {
        "task": "segmentation",
        "energy_axis": {"size": 16, "scale_ev": 20.0, "offset_ev": 0.0},
        "beam_energy_kev": 15,
    }
    new = migrate_hparams(old)
    assert new == {"task": "segmentation", "point_context": {"energy_axis": old["energy_axis"], "beam_energy_kev": 15}}
    assert migrate_hparams(new) is new  # current hyper-parameters pass unchanged
