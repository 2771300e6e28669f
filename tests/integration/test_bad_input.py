"""Bad input: one-line error naming the culprit, non-zero exit, no output that looks complete.

One test per row of docs/errors.md that is caught by an entry point; the rows caught when
the DAG is parsed are tested in test_dag.py, the non-finite loss in test_train.py and the
GenEval sha256 in tests/unit/test_geneval_real.py.
"""

import json

import numpy as np
import pytest

from eval.geneval.folder import write_prompt_folder
from gdmd.shapes.prompts import evaluation_metadata, write_metadata

from ..conftest import run_cli


def one_line_error(r, text):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    # progress bars (tqdm, on stderr) are not messages
    lines = [line for line in r.stderr.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert text in lines[0], lines[0]


@pytest.fixture()
def folder(tmp_path):
    """A valid GenEval folder of 2 prompts x 2 images."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for i, meta in enumerate(evaluation_metadata(per_tag=1)[:2]):
        write_prompt_folder(root, i, meta, [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)])
    (root / "sampling.json").write_text(json.dumps({"images_per_prompt": 2}))
    return root


def _run_settings(tmp_path, asset_dir, **changes):
    settings = {
        "study": "t", "run": "teacher", "backbone": "shapes", "method": "teacher", "steps": 2, "cfg_scale": 2.0,
        "assets": {"teacher": str(asset_dir / "teacher"), "text_encoder": str(asset_dir / "clip")},
    }  # fmt: skip
    settings.update(changes)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(settings))
    return path


def test_missing_teacher_weights(tiny_assets, tmp_path):
    run = _run_settings(
        tmp_path, tiny_assets, assets={"teacher": str(tmp_path / "nowhere"), "text_encoder": str(tiny_assets / "clip")}
    )
    meta = tmp_path / "meta.jsonl"
    write_metadata(evaluation_metadata(per_tag=1), meta)
    r = run_cli("gdmd.sample", "--run-config", run, "--metadata", meta, "--out", tmp_path / "out")
    one_line_error(r, f"{tmp_path / 'nowhere' / 'backbone.json'}: teacher weights not found")
    assert not (tmp_path / "out").exists()


def test_missing_reward_weights(folder, tmp_path):
    r = run_cli("eval.preference", "--images", folder, "--metrics", "shapes_clipscore", "--weights", f"clip={tmp_path / 'no'}",
                "--out", tmp_path / "s.csv")  # fmt: skip
    one_line_error(r, f"{tmp_path / 'no' / 'open_clip_config.json'}: shapes CLIP weights not found")
    assert not (tmp_path / "s.csv").exists()


def test_unknown_preference_metric_lists_the_known(folder, tmp_path):
    r = run_cli("eval.preference", "--images", folder, "--metrics", "hps", "--out", tmp_path / "s.csv")
    one_line_error(r, "unknown preference metric 'hps'; known: shapes_clipscore, shapes_aesthetic")


def test_unknown_detector_lists_the_known(folder, tmp_path):
    r = run_cli("eval.geneval", "--images", folder, "--backend", "yolo", "--out", tmp_path / "r.jsonl")
    one_line_error(r, "argument --backend: invalid choice: 'yolo' (choose from")
    assert not (tmp_path / "r.jsonl").exists()


def test_corrupt_image(folder, tmp_path):
    bad = folder / "00001" / "samples" / "0001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = run_cli("eval.geneval", "--images", folder, "--out", tmp_path / "r.jsonl")
    one_line_error(r, f"{bad}: cannot read image")
    assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "r.summary.json").exists()


def test_missing_image(folder, tmp_path):
    (folder / "00000" / "samples" / "0001.png").unlink()
    r = run_cli("eval.geneval", "--images", folder, "--out", tmp_path / "r.jsonl")
    one_line_error(r, f"{folder / '00000' / 'samples'}: expected 2 images, found 1")


def test_malformed_metadata_line_gives_the_line_number(tiny_assets, tmp_path):
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps(evaluation_metadata(per_tag=1)[0]) + "\n{'tag': 'single_object'}\n")
    r = run_cli("gdmd.sample", "--run-config", _run_settings(tmp_path, tiny_assets), "--metadata", meta, "--out", tmp_path / "o")
    one_line_error(r, f"{meta}:2: malformed JSON")
    assert not (tmp_path / "o").exists()


def test_metadata_missing_a_key_gives_the_line_number(tiny_assets, tmp_path):
    meta = tmp_path / "meta.jsonl"
    meta.write_text('{"tag": "single_object", "include": [{"class": "circle", "count": 1}]}\n')
    r = run_cli("gdmd.sample", "--run-config", _run_settings(tmp_path, tiny_assets), "--metadata", meta, "--out", tmp_path / "o")
    one_line_error(r, f"{meta}:1: missing key 'prompt'")


def test_empty_prompt_set(tiny_assets, tmp_path):
    meta = tmp_path / "meta.jsonl"
    meta.write_text("\n")
    r = run_cli("gdmd.sample", "--run-config", _run_settings(tmp_path, tiny_assets), "--metadata", meta, "--out", tmp_path / "o")
    one_line_error(r, f"{meta}: empty prompt set")


def test_output_path_not_writable(folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_cli("eval.geneval", "--images", folder, "--out", blocker / "r.jsonl")
    one_line_error(r, f"{blocker / 'r.jsonl'}: cannot write output (")


def test_unknown_method_in_run_settings(tmp_path):
    settings = {
        "study": "t",
        "run": "x",
        "backbone": "shapes",
        "assets": {"teacher": "a", "text_encoder": "b"},
        "method": "dmd2",
        "steps": 4,
    }
    r = run_cli("gdmd.study", "--settings", json.dumps(settings), "--out", tmp_path / "x.json")
    one_line_error(r, "unknown method 'dmd2'; known: teacher, dmd")
    assert not (tmp_path / "x.json").exists()


def test_unknown_backbone_in_run_settings(tiny_assets, tmp_path):
    run = _run_settings(tmp_path, tiny_assets, backbone="sdxl")
    meta = tmp_path / "meta.jsonl"
    write_metadata(evaluation_metadata(per_tag=1), meta)
    r = run_cli("gdmd.sample", "--run-config", run, "--metadata", meta, "--out", tmp_path / "o")
    one_line_error(r, "unknown backbone 'sdxl'; known: shapes")


def test_image_that_is_not_an_image_name(folder, tmp_path):
    # a folder without prompt subfolders
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("eval.geneval", "--images", empty, "--out", tmp_path / "r.jsonl")
    one_line_error(r, f"{empty}: no prompt folders")
