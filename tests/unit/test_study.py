"""Study configs: `base:` and `like:` resolution (recipes written once), the shipped
configs' resolved runs, run settings."""

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
    with pytest.raises(UserError, match="includes itself"):
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
