"""The shapes world: renderer, GenEval-schema prompts, the training caption distribution, the detector."""

import collections
import json

import numpy as np
import pytest

from eval.geneval import judge, select
from gdmd.shapes import prompts, world
from gdmd.shapes.detector import detect, scene_detections, truth

from ..conftest import GENEVAL_DATA

OFFICIAL = GENEVAL_DATA / "evaluation_metadata.jsonl"


# -- renderer --------------------------------------------------------------------------


def test_coverage_is_exact_area():
    # a 10 px square aligned to the pixel grid covers exactly 100 pixels; a disc of
    # diameter 12 covers pi * 36 up to supersampling error
    sq = world.coverage("square", 16, 16, 10, 32)
    assert sq.sum() == pytest.approx(100.0)
    assert set(np.unique(sq)) == {0.0, 1.0}
    assert world.coverage("circle", 16.3, 15.7, 12, 32).sum() == pytest.approx(np.pi * 36, rel=0.01)
    assert world.coverage("triangle", 16, 16, 12, 32).sum() == pytest.approx(72, rel=0.01)


def test_render_draws_palette_colours_on_background():
    img = world.render([world.ShapeObject("square", "blue", 10, 10, 8)], 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert tuple(img[10, 10]) == world.COLORS["blue"]
    assert tuple(img[30, 30]) == world.BACKGROUND


def test_bad_object_names_fail_with_the_known_names():
    with pytest.raises(ValueError, match="circle, square, triangle"):
        world.ShapeObject("hexagon", "red", 5, 5, 4)
    with pytest.raises(ValueError, match="unknown colour 'grey'"):
        world.ShapeObject("circle", "grey", 5, 5, 4)


def test_degradations_change_the_image_with_severity():
    rng = np.random.default_rng(0)
    img = world.render([world.ShapeObject("circle", "red", 16, 16, 12)])
    for kind in world.DEGRADATIONS:
        assert np.array_equal(world.degrade(img, kind, 0.0, rng), img)
        assert np.abs(world.degrade(img, kind, 1.0, rng).astype(int) - img).sum() > 0


# -- prompts ------------------------------------------------------------------------------


def test_evaluation_set_has_geneval_schema_and_balance():
    rows = prompts.evaluation_metadata(50, seed=0)
    assert len(rows) == 300
    assert collections.Counter(r["tag"] for r in rows) == {t: 50 for t in prompts.TAGS}
    for r in rows:
        assert set(r) <= {"tag", "prompt", "include", "exclude"}
        assert r["prompt"].startswith("a photo of ")
    # prompts of small tags are spread evenly: each of the 3 single-object prompts 16 or 17 times
    counts = collections.Counter(r["prompt"] for r in rows if r["tag"] == "single_object")
    assert sorted(counts.values()) == [16, 17, 17]
    assert prompts.evaluation_metadata(50, seed=0) == rows  # fixed


def test_templates_match_geneval_official_file():
    """Every shapes prompt uses a template that also generates GenEval's own prompts."""
    official = [json.loads(line) for line in OFFICIAL.read_text().splitlines()]

    def template(r):
        text = r["prompt"]
        for c in r["include"]:
            if "color" in c:
                text = text.replace(c["color"], "<c>")
        for c in r["include"]:
            text = text.replace(c["class"] + ("es" if c["class"].endswith("s") else "s") if c["count"] > 1 else c["class"], "<o>")
        text = text.replace("an <", "a <")
        for w in ("two", "three", "four"):
            text = text.replace(f"{w} <o>", "<n> <o>")
        return r["tag"], text, json.dumps([sorted(k for k in c if k != "class") for c in r["include"]])

    official_templates = {template(r) for r in official}
    ours = {template(r) for r in prompts.evaluation_metadata(50, 0)}
    assert ours <= official_templates, ours - official_templates


def test_training_captions_are_disjoint_from_every_template_prompt():
    gen = prompts.TrainingCaptions(exclude=prompts.template_prompts(), seed=0)
    _, caps, metas = gen.batch(3000)
    assert not set(caps) & prompts.template_prompts()
    assert len(set(caps)) > 500
    assert set(m["tag"] for m in metas) == set(prompts.TAGS)
    # every word of the evaluation prompts is seen in training
    words = {w for c in caps for w in c.split()}
    assert {w for r in prompts.evaluation_metadata(50, 0) for w in r["prompt"].split()} <= words


def test_training_scenes_are_true_of_their_captions():
    gen = prompts.TrainingCaptions(exclude=prompts.template_prompts(), seed=1)
    for objs, cap, meta in zip(*gen.batch(500)):
        assert meta["prompt"] == cap
        assert truth(meta, objs), cap


# -- detector ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_set():
    return prompts.evaluation_metadata(50, seed=0)


def _judge_render(meta, objs):
    return judge(meta, select(detect(world.render(objs)), meta["tag"]))[0]


def test_detector_judges_ground_truth_renders_correct(eval_set):
    rng = np.random.default_rng(0)
    ok = [_judge_render(m, prompts.scene_for(m, rng)) for m in eval_set for _ in range(4)]
    assert np.mean(ok) >= 0.98


def test_detector_judges_violating_renders_incorrect(eval_set):
    rng = np.random.default_rng(1)
    kinds = collections.Counter()
    wrong = []
    for m in eval_set:
        for _ in range(4):
            objs, kind = prompts.violating_scene(m, rng)
            assert not truth(m, objs), (m["prompt"], kind)  # the violation is real
            kinds[kind] += 1
            wrong.append(not _judge_render(m, objs))
    assert set(kinds) == {"missing object", "wrong count", "wrong colour", "swapped position"}
    assert np.mean(wrong) >= 0.98


def test_detections_match_the_scene():
    rng = np.random.default_rng(2)
    for shape in world.SHAPES:
        for color in world.COLORS:
            objs = prompts.place([(shape, color), ("square" if shape != "square" else "circle", "white")], rng)
            found = detect(world.render(objs))
            d = found[shape][0]
            assert d.color == color and d.score > 0.95
            assert np.allclose(d.box, objs[0].box, atol=0.6)
            assert d.mask.shape == (32, 32) and d.mask.sum() > 0


def test_a_blob_between_shapes_scores_below_threshold():
    # a soft blob (blurred disc) is neither a clean circle nor a square: low confidence
    rng = np.random.default_rng(3)
    img = world.degrade(world.render([world.ShapeObject("square", "red", 16, 16, 14)]), "blur", 1.0, rng)
    img = world.degrade(img, "blur", 1.0, rng)
    scores = [d.score for v in detect(img).values() for d in v]
    assert scores and max(scores) < 0.9


def test_touching_objects_of_different_colours_are_split():
    objs = [world.ShapeObject("square", "red", 10, 16, 10), world.ShapeObject("square", "blue", 20, 16, 10)]
    found = detect(world.render(objs))
    assert sorted(d.color for d in found["square"]) == ["blue", "red"]


def test_scene_detections_are_exact():
    objs = [world.ShapeObject("circle", "red", 8, 8, 6)]
    d = scene_detections(objs)["circle"][0]
    assert d.box == (5.0, 5.0, 11.0, 11.0) and d.score == 1.0 and d.color == "red"
