"""The two install routes (pip via pyproject.toml, conda via environment.yml) stay in step."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    return {m.group(1).lower(): m.group(2) for line in lines
            if (m := re.match(r"\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s;]+)", line))}


def test_environment_yml_matches_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject_pins = _pins(project["dependencies"])
    conda_pins = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert conda_pins, "environment.yml pins nothing"
    for name, version in conda_pins.items():
        assert pyproject_pins.get(name) == version, f"{name}: environment.yml {version} vs pyproject {pyproject_pins.get(name)}"
    assert "-e ." in (ROOT / "environment.yml").read_text(), "environment.yml must install the project"
    assert {"torch", "torchvision", "open_clip_torch"} <= set(pyproject_pins)


def test_console_script_and_markers_declared():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["scripts"]["workbench"] == "workbench.cli:app"
    markers = " ".join(data["tool"]["pytest"]["ini_options"]["markers"])
    for marker in ("slow", "gpu", "e2e"):
        assert f"{marker}:" in markers
