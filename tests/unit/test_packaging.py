"""pyproject.toml and environment.yml list the same packages with the same version bounds."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONDA_NAMES = {"pytorch": "torch", "open-clip-torch": "open_clip_torch"}


def _split(spec: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec.strip())
    return m.group(1).lower().replace("-", "_"), m.group(2).replace(" ", "")


def test_environment_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py = dict(_split(s) for s in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        py.update(_split(s) for s in extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict) or dep == "pip" or dep.startswith("python"):
            continue
        name, ver = _split(dep)
        conda[CONDA_NAMES.get(name.replace("_", "-"), name).lower().replace("-", "_")] = ver
    assert conda == py
    assert env["dependencies"][0] == "python" + project["requires-python"]


def test_torch_is_not_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = [s for s in project["dependencies"] if s.startswith("torch")]
    assert torch and all("==" not in s for s in torch)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make study" in readme
    assert "make test" in ci
