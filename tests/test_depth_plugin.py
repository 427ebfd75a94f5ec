"""The depth-completion plugin (examples/fusionseg_depth) as a user installs and runs it, on small crops."""

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

PLUGIN = Path(__file__).resolve().parent.parent / "examples" / "fusionseg_depth"
try:  # `make install` installs the plugin; a bare checkout still runs these tests from its folder
    import fusionseg_depth  # noqa: F401
except ImportError:
    sys.path.insert(0, str(PLUGIN))
    import fusionseg_depth  # noqa: F401

from fusionseg_depth import evaluate  # noqa: E402
from fusionseg_depth.baselines import FGSSettings, fgs_fill, linear_fill, nearest_fill  # noqa: E402
from fusionseg_depth.data import (  # noqa: E402
    DepthInputError,
    HideAndPredict,
    Scene,
    check_samples,
    draw_samples,
    full_sample,
    load_motorcycle,
    motorcycle_scene,
)
from fusionseg_depth.metrics import depth_scores  # noqa: E402
from fusionseg_depth.train import MODEL_DEFAULTS, build_model  # noqa: E402

WINDOW = (150, 300, 96, 128)  # rows 150-245, cols 300-427: the motorcycle's front against the background


@pytest.fixture(scope="module")
def scene() -> Scene:
    return motorcycle_scene(0.05, 0, WINDOW)


def test_entry_point_registers_the_plugin_parts(tmp_path):
    """Installed (as `make install` does), the plugin's source, head and loss appear in fusionseg's registries."""
    installed = any(ep.value == "fusionseg_depth" for ep in entry_points(group="fusionseg.plugins"))
    prelude = ""
    if not installed:  # a bare checkout: install a copy where only this test sees it
        target = tmp_path / "site"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
             "--target", str(target), str(PLUGIN)],
            check=True, capture_output=True,
        )  # fmt: skip
        prelude = f"import sys; sys.path.insert(0, {str(target)!r})"
    code = textwrap.dedent(
        f"""
        {prelude}
        from fusionseg.registry import DATA_SOURCES, HEADS, LOSSES, load_plugins
        assert "depth" in load_plugins()
        print(" ".join(n for n in ("stereo-motorcycle", "residual", "silog")
                       if n in DATA_SOURCES.names() + HEADS.names() + LOSSES.names()))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["stereo-motorcycle", "residual", "silog"]


def test_scene_samples_only_valid_pixels_and_the_fraction_asked():
    rgb, truth = load_motorcycle()
    assert rgb.shape == (500, 741, 3) and truth.shape == (500, 741)
    invalid = ~np.isfinite(truth)
    assert 0.06 < invalid.mean() < 0.08
    coords = draw_samples(truth, 0.01, 0)
    assert len(coords) == round(0.01 * (~invalid).sum()) and not invalid[coords[:, 0], coords[:, 1]].any()
    assert np.array_equal(coords, draw_samples(truth, 0.01, 0))
    assert not np.array_equal(coords, draw_samples(truth, 0.01, 1))


def test_baselines_reproduce_their_samples_and_score_only_valid_pixels(scene):
    for fill in (nearest_fill(scene.coords, scene.values, scene.shape),
                 linear_fill(scene.coords, scene.values, scene.shape)):  # fmt: skip
        assert fill.shape == scene.shape and np.isfinite(fill).all()
        assert np.allclose(fill[scene.coords[:, 0], scene.coords[:, 1]], scene.values, atol=1e-4)  # interpolants
    smooth = fgs_fill(scene.rgb, scene.coords, scene.values, FGSSettings())  # a smoother: within the samples' range
    assert np.isfinite(smooth).all()
    assert scene.values.min() - 0.01 <= smooth.min() <= smooth.max() <= scene.values.max() + 0.01
    valid = np.isfinite(scene.truth)
    pred = np.where(valid, scene.truth, 1e6)  # invalid pixels are never scored
    n = int(valid.sum())
    off = np.ceil(n / 4) / n  # share of the scored pixels given an error of 2 px
    pred[valid] += np.where(np.arange(n) % 4 == 0, 2.0, 0.0)
    s = depth_scores(pred, scene.truth)
    assert s["mae"] == pytest.approx(2 * off, abs=1e-4) and s["rmse"] == pytest.approx(2 * off**0.5, abs=1e-4)
    assert s["bad1"] == pytest.approx(100 * off, abs=1e-3) and s["bad3"] == 0.0


def test_hide_and_predict_items_hide_samples_from_the_input(scene):
    item = HideAndPredict(scene, FGSSettings(), crop=64, hide=0.4, length=3, seed=0)[0]
    assert item.image.shape == (9, 64, 64) and item.target.shape == (64, 64)
    labelled = ~torch.isnan(item.target)
    assert labelled.sum() > 5 and item.num_points > 5
    shown = item.point_coords.long()
    assert not labelled[shown[:, 0], shown[:, 1]].any(), "a hidden sample is also an input"
    assert torch.allclose(item.point_features[:, 0] * 32, item.point_target)


def test_mirror_scene_round_trips(scene):
    back = scene.flipped().flipped()
    assert np.array_equal(back.rgb, scene.rgb) and np.array_equal(back.coords, scene.coords)
    flipped = scene.flipped()
    assert np.array_equal(flipped.truth[flipped.coords[:, 0], flipped.coords[:, 1]], scene.values)


def test_untrained_model_returns_the_classic_completion_exactly(scene):
    """The residual head starts at zero: the model's floor is the fast global smoother it refines."""
    fgs = FGSSettings(100.0, 8.0)
    model = build_model(1e-3)
    pred = model.predict_samples([full_sample(scene, fgs, None, "crop")])[0]["values"][0].numpy()
    assert np.allclose(pred, fgs_fill(scene.rgb, scene.coords, scene.values, fgs), atol=1e-4)


def test_evaluate_writes_the_json_schema_table_and_figure(tmp_path, capsys):
    out = tmp_path / "run.json"
    argv = ["--fraction", "0.05", "--seed", "0", "--json", str(out), "--steps", "3", "--batch", "2", "--crop", "48",
            "--window", *map(str, WINDOW)]  # fmt: skip
    assert evaluate.main(argv) == 0
    result = json.loads(out.read_text())
    assert list(result) == ["fraction", "seed", "points", "rmse", "mae", "bad1", "bad3", "seconds", "baselines"]
    assert result["fraction"] == 0.05 and result["seed"] == 0 and result["points"] > 100
    assert set(result["baselines"]) == {"nearest", "linear", "fgs", "fgs_multiscale"}
    scene = motorcycle_scene(0.05, 0, WINDOW)
    linear = depth_scores(linear_fill(scene.coords, scene.values, scene.shape), scene.truth)
    assert result["baselines"]["linear"]["rmse"] == linear["rmse"]
    assert 0 < result["rmse"] < 2 * result["baselines"]["nearest"]["rmse"]
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "| fusionseg (per-image) |" in capsys.readouterr().out


def test_inductive_evaluation_scores_only_the_unseen_region(tmp_path, capsys):
    out = tmp_path / "ind.json"
    argv = ["--fraction", "0.05", "--json", str(out), "--steps", "2", "--batch", "2", "--crop", "40",
            "--window", *map(str, WINDOW), "--inductive", "0.5"]  # fmt: skip
    assert evaluate.main(argv) == 0
    right = motorcycle_scene(0.05, 0, WINDOW).region(64, 128)
    result = json.loads(out.read_text())
    assert result["points"] == len(right.values)
    linear = depth_scores(linear_fill(right.coords, right.values, right.shape), right.truth)
    assert result["baselines"]["linear"]["rmse"] == linear["rmse"]
    assert "inductive: trained on the left 0.5" in capsys.readouterr().out


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_outside_unit_interval_is_refused(fraction, tmp_path, capsys):
    assert evaluate.main(["--fraction", str(fraction), "--json", str(tmp_path / "x.json")]) == 2
    assert "fraction must be in (0, 1]" in capsys.readouterr().err
    with pytest.raises(DepthInputError, match="e.g. 0.01"):
        draw_samples(load_motorcycle()[1], fraction, 0)


def test_bad_samples_name_the_fix():
    rgb, truth = load_motorcycle()
    valid = np.isfinite(truth)
    good = np.argwhere(valid)[::5000][:10]
    vals = truth[good[:, 0], good[:, 1]]
    with pytest.raises(DepthInputError, match="crop or resize both"):
        check_samples(rgb[:400], good, vals, valid)
    bad_pixel = np.argwhere(~valid)[:1]
    with pytest.raises(DepthInputError, match="draw samples from valid pixels only"):
        check_samples(rgb, np.concatenate([good, bad_pixel]), np.append(vals, 10.0), valid)
    with pytest.raises(DepthInputError, match="drop those samples"):
        check_samples(rgb, good, np.where(np.arange(10) == 3, np.nan, vals), valid)
    with pytest.raises(DepthInputError, match="drop those samples"):
        check_samples(rgb, good, np.where(np.arange(10) == 3, np.inf, vals), valid)
    with pytest.raises(DepthInputError, match="at least 3 are needed"):
        check_samples(rgb, good[:2], vals[:2], valid)
    with pytest.raises(DepthInputError, match="outside the 500x741 image"):
        check_samples(rgb, good + np.array([0, 741]), vals, valid)
    with pytest.raises(DepthInputError, match="at least 3 are needed"):
        draw_samples(truth[:10, :10], 0.01, 0)


def test_silog_ignores_a_global_scale_with_lam_one():
    from fusionseg.models.losses import create_loss

    pred, target = torch.tensor([[10.0], [20.0], [35.0]]), torch.tensor([12.0, 18.0, float("nan")])
    loss = create_loss("silog", lam=1.0)
    assert loss(pred, target).item() == pytest.approx(loss(3 * pred, target).item(), abs=1e-6)
    assert create_loss("silog", lam=0.0)(pred, target).item() > loss(pred, target).item()


def test_config_model_matches_the_evaluated_model():
    config = yaml.safe_load((PLUGIN / "configs" / "depth.yaml").read_text())["model"]
    config.pop("optimizer")
    linked = {"image_channels", "point_channels"}  # the CLI links them from the data
    assert config == {k: v for k, v in MODEL_DEFAULTS.items() if k not in linked}


def test_fusionseg_fit_runs_the_config(tmp_path, monkeypatch):
    """`fusionseg fit --config examples/fusionseg_depth/configs/depth.yaml` on a crop, 2 steps."""
    from fusionseg.cli import make_cli

    monkeypatch.chdir(tmp_path)
    cli = make_cli(
        ["fit", "--config", str(PLUGIN / "configs" / "depth.yaml"), "--trainer.max_epochs=1",
         "--trainer.enable_progress_bar=false", f"--data.source_kwargs.window=[{','.join(map(str, WINDOW))}]",
         "--data.source_kwargs.crop=48", "--data.source_kwargs.fgs=[100,8]", "--data.train_fields=4",
         "--data.batch_size=2", "--data.eds_fraction=0.05"],
    )  # fmt: skip
    metrics = cli.trainer.callback_metrics
    assert {"val/rmse", "val/mae", "val/bad1", "val/bad3"} <= set(metrics)
    assert cli.model.point_encoder.out_dim == 1 and cli.trainer.checkpoint_callback.monitor == "val/rmse"
    assert Path(cli.trainer.checkpoint_callback.best_model_path).is_file()
