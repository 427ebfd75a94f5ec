"""The package's import graph has no cycles (library modules never import a command module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "import-cycles"


@pytest.mark.skipif(not TOOL.exists(), reason="../shared/tools/import-cycles not present")
def test_no_import_cycles() -> None:
    out = subprocess.run([sys.executable, str(TOOL), "fusionseg"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "0 import cycles" in out.stdout, out.stdout + out.stderr
