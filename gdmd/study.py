"""A run's resolved configuration: what the DAG hands to every entry point of one run.

The study config (config/<study>.yaml) is validated against workflow/schemas/ when the
DAG is parsed; the DAG then writes one JSON file per run (results/<study>/runs/<run>.json)
holding everything that run's jobs need. Entry points (`gdmd.sample`, `gdmd.train`) read
that file into the frozen dataclasses below, so an unknown key or a wrong type fails there
too, with its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import config as cfglib
from .io import CliParser, UserError

METHODS = ("teacher",)  # methods that train extend this through gdmd.methods.METHODS


@dataclass(frozen=True)
class Assets:
    teacher: str
    text_encoder: str


@dataclass(frozen=True)
class RunConfig:
    study: str
    run: str
    backbone: str
    assets: Assets
    method: str
    steps: int  # sampling steps (teacher) or generator steps K (students)
    cfg_scale: float = 1.0  # classifier-free guidance at sampling (teacher runs)
    batch_size: int = 128  # sampling batch size
    train: dict = field(default_factory=dict)  # method hyper-parameters, checked by the method
    weights: dict = field(default_factory=dict)  # named weight paths of the study's scorers (rewards)
    backbone_options: dict = field(default_factory=dict)  # the study's backbone_options (gdmd.backbones.OPTIONS)

    @property
    def nfe(self) -> int:
        """Network evaluations per image: a guided step costs two."""
        return self.steps * (2 if self.cfg_scale != 1.0 else 1)


def run_settings(study: dict, run: str) -> dict:
    """One run's settings from a (schema-validated) study config: what runs/<run>.json holds."""
    if run not in study["runs"]:
        raise UserError(f"unknown run {run!r}; known: {', '.join(study['runs'])}")
    r = study["runs"][run]
    return {
        "study": study["study"],
        "run": run,
        "backbone": study["backbone"],
        "assets": dict(study["assets"]),
        "method": r["method"],
        "steps": r["steps"],
        "cfg_scale": r.get("cfg_scale", 1.0),
        "batch_size": study.get("sampling", {}).get("batch_size", 128),
        "train": r.get("train", {}),
        "weights": dict(study.get("preference", {}).get("weights", {})),
        # only where set, so a study without them writes the same settings file as before
        **({"backbone_options": dict(study["backbone_options"])} if study.get("backbone_options") else {}),
    }


def resolve(study: dict, source: str = "config") -> dict:
    """A study config with `base:` and `like:` resolved, so recipes are written once.

    - `base: <file>`: the study builds on that config; its top-level keys replace the
      base's, except `runs`, which extends the base's runs (a run of the same name replaces
      the base's, in the base's place, unless it is `like:` itself: see below). Bases may
      chain.
    - a run's `like: <run>`: it takes that run's method, steps and `train:` section, its
      own keys replacing those (its own `train:` keys replacing single train keys; a
      train key set to null drops the inherited one). `like:` its own name takes the
      base's run of that name (config/rehearsal.yaml: sd3m's runs at other sizes).
    The result has neither key; the schema then checks it as any study."""
    from .config import read_yaml

    merged, chain = dict(study), []
    while "base" in merged:
        path = merged.pop("base")
        if not isinstance(path, str) or not path:
            raise UserError(f"{chain[-1] if chain else source}: base: {path!r} is not a config file name")
        seen = [Path(p).resolve() for p in chain]
        if Path(path).resolve() in seen:
            cycle = " -> ".join([*chain[seen.index(Path(path).resolve()) :], path])
            raise UserError(f"{chain[-1]}: base: {path!r} makes a cycle ({cycle})")
        chain.append(path)
        base = read_yaml(path)
        base_runs = base.get("runs") or {}
        runs = dict(base_runs)
        for name, run in (merged.get("runs") or {}).items():
            extends = isinstance(run, dict) and run.get("like") == name and isinstance(base_runs.get(name), dict)
            runs[name] = _merge_run(base_runs[name], run) if extends else run
        merged = {**base, **{k: v for k, v in merged.items() if k != "runs"}, "runs": runs}
    runs = merged.get("runs")
    if isinstance(runs, dict):
        merged["runs"] = {name: _like(runs, name, source) for name in runs}
    return merged


def _like(runs: dict, name: str, source: str, chain: tuple = ()) -> dict:
    run = runs[name]
    if not isinstance(run, dict) or "like" not in run:
        return run
    other = run["like"]
    if other not in runs or other in chain or other == name:
        raise UserError(f"{source}: runs.{name}.like: {other!r} is not another run of the study")
    return _merge_run(_like(runs, other, source, (*chain, name)), run)


def _merge_run(parent: dict, run: dict) -> dict:
    """`run` (less its `like:`) over `parent`: its keys replace the parent's, its `train:`
    keys the parent's train keys (null drops one)."""
    own = {k: v for k, v in run.items() if k != "like"}
    train = {k: v for k, v in {**(parent.get("train") or {}), **(own.get("train") or {})}.items() if v is not None}
    return {**parent, **own, **({"train": train} if train else {})}


def _path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path)


def _message(error) -> str:
    """One line for a jsonschema error, naming the key and, for choices, the known values."""
    where = _path(error)
    if error.validator == "additionalProperties":
        known = ", ".join(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        place = f"{where}: " if where else ""
        return f"{place}unknown key {extra[0]!r}" + (f"; known: {known}" if known else "")
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "required":
        return f"{where + ': ' if where else ''}{error.message}"
    return f"{where}: {error.message}"


def validate_study(study: dict, schema_file: str | Path, source: str = "config") -> None:
    """Validate a study config against the JSON schema; the first error, as one line."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_file).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(study), key=lambda e: (len(e.absolute_path), _path(e)))
    if errors:
        raise UserError(f"{source}: {_message(errors[0])}")
    bad = next(_nonfinite(study), None)  # JSON schema's number checks let NaN and inf through
    if bad is not None:
        raise UserError(f"{source}: {bad[0]}: expected a finite number, got {bad[1]}")


def _nonfinite(value, where: str = ""):
    """(key, value) of every NaN or infinite number in a config, depth first."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nonfinite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nonfinite(v, f"{where}.{i}")


def known_methods() -> tuple[str, ...]:
    try:
        from .methods import METHODS as trained
    except ImportError:
        trained = {}
    return METHODS + tuple(trained)


def load_run(path: str | Path) -> RunConfig:
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: run config not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON ({e.msg})") from None
    try:
        run = cfglib.from_dict(RunConfig, data)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    if run.method not in known_methods():
        raise UserError(f"{path}: unknown method {run.method!r}; known: {', '.join(known_methods())}")
    return run


def main(argv=None):
    """`python -m gdmd.study --settings JSON --out FILE`: check and write a run's settings."""
    import json

    from .io import atomic_write_json, run_cli

    def _main():
        p = CliParser(prog="python -m gdmd.study", description="Check and write one run's settings.")
        p.add_argument("--settings", required=True, help="the run's settings as JSON")
        p.add_argument("--out", required=True, type=Path)
        args = p.parse_args(argv)
        try:
            data = json.loads(args.settings)
        except json.JSONDecodeError as e:
            raise UserError(f"--settings: malformed JSON ({e.msg})") from None
        run = cfglib.from_dict(RunConfig, data)
        if run.method not in known_methods():
            raise UserError(f"run {run.run!r}: unknown method {run.method!r}; known: {', '.join(known_methods())}")
        atomic_write_json(args.out, data)

    run_cli(_main)


if __name__ == "__main__":
    main()
