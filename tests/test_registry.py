import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fusionseg.registry import GRAPH_BUILDERS, Registry, UnknownNameError

PLUGIN_PKG = Path(__file__).parent / "plugin_pkg"


def test_register_create_and_names():
    reg: Registry = Registry("widget")

    @reg.register("round_widget", "circle")
    class Round:
        def __init__(self, radius: float = 1.0):
            self.radius = radius

    assert reg.create("round-widget", radius=2.0).radius == 2.0
    assert isinstance(reg.create("circle"), Round)
    assert "round-widget" in reg.names() and "circle" in reg.names()


def test_typo_lists_known_names_and_suggests():
    reg: Registry = Registry("widget")
    reg.register("square")(object)
    reg.register("triangle")(object)
    with pytest.raises(UnknownNameError) as err:
        reg.create("sqaure")
    msg = str(err.value)
    assert "Did you mean 'square'" in msg and "triangle" in msg


def test_duplicate_registration_is_refused():
    reg: Registry = Registry("widget")
    reg.register("a")(int)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(float)


def test_builtin_registries_are_populated():
    assert {"grid", "knn", "superpixel"} <= set(GRAPH_BUILDERS.names())


def test_entry_point_plugin_adds_parts(tmp_path):
    """An installed third-party package registers its parts without touching fusionseg (test_contracts runs them)."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(PLUGIN_PKG)],
        check=True, capture_output=True,
    )  # fmt: skip
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        from fusionseg.registry import BACKBONES, GRAPH_BUILDERS
        assert "toy-rows" in GRAPH_BUILDERS.names(), GRAPH_BUILDERS.names()
        assert GRAPH_BUILDERS.create("toy-rows", cross_k=2).cross_k == 2
        net = BACKBONES.create("toy-mlp", in_channels=3, hidden_channels=5)
        import torch
        assert net(torch.zeros(2, 3), torch.tensor([[0], [1]])).shape == (2, 5)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
