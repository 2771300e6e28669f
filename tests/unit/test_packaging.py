"""pyproject.toml and environment.yml list the same packages with the same version bounds."""

import json
import os
import re
import subprocess
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


def test_the_dag_parse_imports_no_torch():
    """Every SLURM job parses the Snakefile again: the config checks it runs (schema, every
    method's typed `train:` config with its ranges, the reward registry) import no torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gdmd import config as cfglib\n"
        "from gdmd.methods import METHODS\n"
        "from gdmd.study import known_methods, validate_study\n"
        "from eval.preference import check_metric\n"
        "for m in METHODS.values():\n"
        "    cfglib.from_dict(m.Config, {'rewards': [{'metric': 'shapes_clipscore', 'margin': 1.0}]}"
        " if m.Config.__name__ != 'DMDConfig' else {}, 'train')\n"
        "print(sorted(k for k in ('torch', 'diffusers', 'open_clip', 'transformers') if k in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_prompt_source_names_agree():
    """Every training prompt source the configs name loads."""
    import importlib

    from gdmd.methods.configs import PROMPT_SOURCES as table

    for spec in table.values():
        module, cls = spec.split(":")
        assert hasattr(importlib.import_module(module), cls)


def test_the_shapes_methods_run_without_the_cluster_extras(tmp_path, tiny_assets):
    """`make study` installs no extras: peft, accelerate and transformers are absent there.
    A venv that sees this environment's packages less those three (dist-info included, so
    diffusers finds them absent too) trains every method of the shapes study."""
    import sysconfig
    import venv

    hidden = ("peft", "accelerate", "transformers")
    site = Path(sysconfig.get_paths()["purelib"])
    filtered = tmp_path / "site"
    filtered.mkdir()
    for entry in site.iterdir():
        if not any(entry.name.lower() == h or entry.name.lower().startswith((h + "-", h + "_")) for h in hidden):
            (filtered / entry.name).symlink_to(entry)
    venv.create(tmp_path / "venv", with_pip=False)
    py = tmp_path / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    )
    (Path(purelib.stdout.strip()) / "study.pth").write_text(f"import site; site.addsitedir({str(filtered)!r})\n")
    rewards = [{"metric": "shapes_clipscore", "weight": 0.01, "margin": 70.0}]
    train = {"iterations": 2, "batch_size": 4, "gen_every": 1, "checkpoint_every": 10}
    extra = {"dmd": {}, "dmd_nft": {"samples_per_prompt": 2}, "dmd_refl": {}, "dmdr": {"cold_start": 1}, "gdmd": {"targets": 2}}
    script = ["import importlib.util, json, sys", f"assert all(importlib.util.find_spec(m) is None for m in {hidden!r})",
              "import gdmd", "from gdmd.train import train", "from pathlib import Path"]  # fmt: skip
    for method, keys in extra.items():
        settings = {"study": "t", "run": method, "backbone": "shapes", "method": method, "steps": 2,
                    "assets": {"teacher": str(tiny_assets / "teacher"), "text_encoder": str(tiny_assets / "clip")},
                    "train": {**train, **keys, **({"rewards": rewards} if method != "dmd" else {})},
                    "weights": {"clip": str(tiny_assets / "clip")}}  # fmt: skip
        (tmp_path / f"{method}.json").write_text(json.dumps(settings))
        script.append(
            f"train(Path({str(tmp_path / f'{method}.json')!r}), 0, Path({str(tmp_path / method / 'final')!r}), Path({str(tmp_path / method / 'work')!r}))"
        )
    r = subprocess.run(
        [py, "-c", "\n".join(script)], capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ""}
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert all((tmp_path / m / "final" / "tensors.safetensors").is_file() for m in extra)


def test_setup_byte_compiles_what_the_study_jobs_import_lazily():
    """`make setup` imports STUDY_MODULES once to write their bytecode (CI machines set
    PYTHONDONTWRITEBYTECODE, so a module left out is compiled from source by every job that
    imports it: diffusers alone costs each job about 5 s). The modules the shapes study's jobs
    import only at run time - its backbone, every method, its prompt source, detector and
    scorers, the pairs CLI - must be in the list."""
    from eval.preference import SCORERS
    from gdmd.backbones import _LOADERS
    from gdmd.methods import METHODS
    from gdmd.methods.configs import PROMPT_SOURCES

    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    listed = set(re.search(r"^STUDY_MODULES := (.*)$", text, re.M).group(1).split())
    study = yaml.safe_load((ROOT / "config" / "shapes.yaml").read_text())
    needed = {_LOADERS[study["backbone"]].split(":")[0], PROMPT_SOURCES["shapes"].split(":")[0], "gdmd.pairs"}
    needed |= {f"gdmd.methods.{m.module}" for m in METHODS.values()}
    needed |= {f"eval.preference.{SCORERS[name].module}" for name in study["preference"]["metrics"]}
    assert needed <= listed, sorted(needed - listed)
