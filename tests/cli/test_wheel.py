"""The package as a user installs it: the wheel holds exactly one top-level package, `rcc`, and once
installed into a fresh environment (reusing this one's dependencies) `rcc --version`, `python -m rcc
--help` and a compile work from another folder, with rcc imported from the install, not this tree."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_runs(tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", ROOT], elsewhere)
    [wheel] = (tmp_path / "dist").glob("rcc-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert top_level == {"rcc", wheel.name.split("-py")[0] + ".dist-info"}

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], elsewhere)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], elsewhere).strip())
    # The dependencies come from this environment; a path line in a .pth file does not run the .pth
    # files it points at, so this environment's editable rcc is not installed into the new one.
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in paths))
    _run([python, "-m", "pip", "install", "--no-deps", "-q", wheel], elsewhere)

    location = _run([python, "-c", "import rcc.compiler.cli, rcc; print(rcc.__file__)"], elsewhere).strip()
    assert Path(location).is_relative_to(site), location
    version = _run([venv / "bin" / "rcc", "--version"], elsewhere)
    assert version.splitlines()[0] == "rcc " + wheel.name.split("-")[1]
    assert [line.split()[0] for line in version.splitlines()] == ["rcc", "onnx", "onnxruntime", "numpy"]
    assert "prune" in _run([python, "-m", "rcc", "--help"], elsewhere)
    out = _run([venv / "bin" / "rcc", ROOT / "models" / "lenet5.onnx", "-o", "lenet5.rccp"], elsewhere)
    assert "wrote lenet5.rccp" in out and (elsewhere / "lenet5.rccp").stat().st_size > 0
