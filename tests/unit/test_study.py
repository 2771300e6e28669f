"""Study configs: `base:` and `like:` resolution (recipes written once), the shipped
configs' resolved runs, run settings."""

import json

import pytest
import yaml

from gdmd.config import read_yaml
from gdmd.io import UserError
from gdmd.study import resolve, run_settings

from ..conftest import ROOT


def test_like_takes_the_other_runs_recipe_and_overrides_single_keys():
    study = {"runs": {"a": {"method": "dmd", "steps": 4, "train": {"iterations": 5, "lr_fake": 1.0, "gen_every": 2}},
                      "b": {"like": "a", "train": {"lr_fake": 2.0, "gen_every": None}},
                      "c": {"like": "b", "method": "gdmd"}}}  # fmt: skip
    runs = resolve(study)["runs"]
    assert runs["b"] == {"method": "dmd", "steps": 4, "train": {"iterations": 5, "lr_fake": 2.0}}  # null drops a key
    assert runs["c"] == {"method": "gdmd", "steps": 4, "train": {"iterations": 5, "lr_fake": 2.0}}
    assert runs["a"] == study["runs"]["a"]


@pytest.mark.parametrize("like", ["nope", "x"])
def test_like_of_an_unknown_or_own_run_is_an_error(like):
    with pytest.raises(UserError, match=rf"runs.x.like: '{like}' is not another run of the study"):
        resolve({"runs": {"x": {"like": like}}})


def test_base_extends_runs_and_replaces_other_keys(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"study": "b", "seeds": [0], "runs": {"t": {"method": "teacher", "steps": 2},
                                                                        "d": {"method": "dmd", "steps": 4}}}, sort_keys=False))  # fmt: skip
    out = resolve(
        {"base": str(base), "study": "big", "seeds": [0, 1], "runs": {"d": {"like": "t", "steps": 8}, "e": {"like": "d"}}}
    )
    assert out["study"] == "big" and out["seeds"] == [0, 1] and "base" not in out
    assert list(out["runs"]) == ["t", "d", "e"]  # the base's order, then the new runs
    assert out["runs"]["d"] == {"method": "teacher", "steps": 8} == out["runs"]["e"]
    with pytest.raises(UserError, match=r"base.yaml: base: .* makes a cycle \(.*base.yaml -> .*base.yaml\)"):
        base.write_text(yaml.safe_dump({"base": str(base)}))
        resolve({"base": str(base)})


def test_shipped_studies_share_one_recipe():
    """shapes-full and shapes-ablations run shapes.yaml's recipes: every student run has
    the same budget, and every ablation differs from gdmd in the keys it names only."""
    shapes = resolve(read_yaml(ROOT / "config" / "shapes.yaml"))
    full = resolve(read_yaml(ROOT / "config" / "shapes-full.yaml"))
    abl = resolve(read_yaml(ROOT / "config" / "shapes-ablations.yaml"))
    assert full["seeds"] == [0, 1, 2] and abl["study"] == full["study"] == "shapes-full"
    for name, run in shapes["runs"].items():
        assert full["runs"][name] == run == abl["runs"][name], name
    budget = {(r["train"]["iterations"], r["train"]["batch_size"], r["train"]["gen_every"])
              for r in abl["runs"].values() if r["method"] != "teacher"}  # fmt: skip
    assert budget == {(500, 16, 5)}
    gdmd = abl["runs"]["gdmd"]["train"]
    for name, run in abl["runs"].items():
        if name.startswith("gdmd-") and run["method"] == "gdmd":
            changed = {k for k in {*gdmd, *run["train"]} if gdmd.get(k) != run["train"].get(k)}
            assert changed and changed <= {
                "group",
                "targets",
                "fake_ema_decays",
                "napo_weight",
                "weights",
                "w_max",
                "temperature",
            }, name
    settings = run_settings(abl, "gdmd-raw")
    assert settings["method"] == "dmd_nft" and settings["weights"]["clip"] == "resources/shapes/clip"


# what a rehearsal may change of the study it rehearses: sizes (and the paths that hold them)
REHEARSAL_SIZES = {
    ("backbone_options", "resolution"), ("prompts", "limit"), ("prompts", "images_per_prompt"), ("sampling", "batch_size"),
    ("seeds",),
}  # fmt: skip
REHEARSAL_TRAIN_SIZES = {"iterations", "batch_size", "checkpoint_every", "cold_start", "dyn_steps", "captions_sha256"}


@pytest.mark.parametrize("rehearsal", ["rehearsal.yaml", "rehearsal-ci.yaml"])
def test_the_rehearsal_is_sd3m_at_other_sizes(rehearsal):
    """Every run, method, metric, rule and recipe key of config/sd3m.yaml, unchanged; only
    sizes differ (and every student run is resized)."""
    sd3m = resolve(read_yaml(ROOT / "config" / "sd3m.yaml"))
    r = resolve(read_yaml(ROOT / "config" / rehearsal))

    def strip(study):
        study = json.loads(json.dumps(study))
        for path in REHEARSAL_SIZES:
            node = study
            for k in path[:-1]:
                node = node.get(k, {})
            node.pop(path[-1], None)
        for run in study["runs"].values():
            for k in REHEARSAL_TRAIN_SIZES:
                run.get("train", {}).pop(k, None)
        return study

    assert strip(r) == strip(sd3m)
    students = {name: run["train"] for name, run in r["runs"].items() if run["method"] != "teacher"}
    assert set(students) == {name for name, run in sd3m["runs"].items() if run["method"] != "teacher"}
    assert all(t["iterations"] <= 10 and t["batch_size"] <= 4 for t in students.values())
    assert all(t.get("cold_start", 0) < t["iterations"] for t in students.values())  # DMDR's hinge runs in it
