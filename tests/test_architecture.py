"""The package's import graph has no cycles (library modules never import a command module), and no core module
imports the SEM domain package (it plugs in through the registries, like a third-party domain)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "import-cycles"


@pytest.mark.skipif(not TOOL.exists(), reason="../shared/tools/import-cycles not present")
def test_no_import_cycles_and_the_core_never_imports_the_sem_domain() -> None:
    cmd = [sys.executable, str(TOOL), "fusionseg", "--domain", "fusionseg/sem"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "0 import cycles" in out.stdout, out.stdout + out.stderr
    assert "imports the domain" not in out.stdout
