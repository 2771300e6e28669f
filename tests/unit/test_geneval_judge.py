"""GenEval's rules (thresholds, suppression, include/exclude, colour, position, summary) on hand-made detections."""

import math

import pytest

from eval.geneval import Detection, box_iou, judge, relative_position, select, summarize


def det(x1, y1, x2, y2, score=0.95, color=None):
    return Detection((x1, y1, x2, y2), score, color=color)


def meta(tag, include, exclude=None):
    m = {"tag": tag, "prompt": "p", "include": include}
    if exclude is not None:
        m["exclude"] = exclude
    return m


# -- select: thresholds, ordering, cap, suppression ----------------------------------------


def test_threshold_is_strictly_greater_than_0_3():
    raw = {"circle": [det(0, 0, 5, 5, 0.3), det(10, 10, 15, 15, 0.3001)]}
    out = select(raw, "single_object")
    assert [d.score for d in out["circle"]] == [0.3001]


def test_class_with_nothing_left_is_absent():
    assert select({"circle": [det(0, 0, 5, 5, 0.1)]}, "colors") == {}


def test_counting_uses_0_9_for_every_class():
    raw = {"circle": [det(0, 0, 5, 5, 0.95), det(10, 0, 15, 5, 0.85)], "square": [det(0, 10, 5, 15, 0.89)]}
    assert {k: len(v) for k, v in select(raw, "counting").items()} == {"circle": 1}
    assert {k: len(v) for k, v in select(raw, "two_object").items()} == {"circle": 2, "square": 1}


def test_sorted_by_score_and_capped_at_16():
    raw = {"circle": [det(i, 0, i + 1, 1, 0.31 + i / 100) for i in range(20)]}
    kept = select(raw, "single_object")["circle"]
    assert len(kept) == 16
    assert [d.score for d in kept] == sorted((0.31 + i / 100 for i in range(4, 20)), reverse=True)


def test_iou_uses_inclusive_pixel_convention():
    # boxes (0,0,9,9) and (5,0,14,9): 10x10 each, overlap 5x10 -> 50 / 150
    assert box_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0


def test_suppression_off_at_1_and_greedy_below():
    a, b, c = det(0, 0, 9, 9, 0.9), det(1, 0, 10, 9, 0.8), det(30, 30, 39, 39, 0.7)
    raw = {"circle": [b, a, c]}
    assert len(select(raw, "single_object")["circle"]) == 3  # max_overlap 1.0: off
    kept = select(raw, "single_object", max_overlap=0.5)["circle"]
    assert kept == [a, c]  # b overlaps the kept a with IoU 0.82 >= 0.5


# -- include / exclude ----------------------------------------------------------------------


def test_count_met_and_missing_reason():
    m = meta("two_object", [{"class": "circle", "count": 1}, {"class": "square", "count": 1}])
    assert judge(m, {"circle": [det(0, 0, 5, 5)], "square": [det(9, 9, 14, 14)]}) == (True, "")
    ok, reason = judge(m, {"circle": [det(0, 0, 5, 5)]})
    assert not ok and reason == "expected square>=1, found 0"


def test_counting_is_exact_n():
    m = meta("counting", [{"class": "circle", "count": 3}], [{"class": "circle", "count": 4}])
    three = [det(10 * i, 0, 10 * i + 5, 5) for i in range(3)]
    assert judge(m, {"circle": three}) == (True, "")
    ok, reason = judge(m, {"circle": three[:2]})
    assert not ok and reason == "expected circle>=3, found 2"
    ok, reason = judge(m, {"circle": three + [det(50, 0, 55, 5)]})
    assert not ok and reason == "expected circle<4, found 4"


def test_reasons_of_several_failures_join_with_newlines():
    m = meta("counting", [{"class": "circle", "count": 2}, {"class": "square", "count": 1}], [{"class": "circle", "count": 1}])
    ok, reason = judge(m, {"circle": [det(0, 0, 5, 5)]})
    assert not ok
    assert reason.split("\n") == ["expected circle>=2, found 1", "expected square>=1, found 0", "expected circle<1, found 1"]


# -- colour -------------------------------------------------------------------------------


def test_colour_checked_on_the_count_most_confident():
    m = meta("colors", [{"class": "circle", "count": 1, "color": "red"}])
    # the red circle is only the second most confident: GenEval ignores it
    ok, reason = judge(m, {"circle": [det(0, 0, 5, 5, 0.9, "blue"), det(9, 9, 14, 14, 0.8, "red")]})
    assert not ok and reason == "expected red circle>=1, found 0 red; and 1 blue"
    assert judge(m, {"circle": [det(0, 0, 5, 5, 0.9, "red"), det(9, 9, 14, 14, 0.8, "blue")]}) == (True, "")


def test_colour_reason_lists_colours_in_geneval_order():
    m = meta("colors", [{"class": "circle", "count": 3, "color": "red"}])
    d = [det(0, 0, 5, 5, 0.9, "white"), det(9, 9, 14, 14, 0.8, "red"), det(20, 20, 25, 25, 0.7, "blue")]
    ok, reason = judge(m, {"circle": d})
    assert not ok and reason == "expected red circle>=3, found 1 red; and 1 red, 1 blue, 1 white"


def test_missing_colour_is_an_error_not_a_guess():
    m = meta("colors", [{"class": "circle", "count": 1, "color": "red"}])
    with pytest.raises(ValueError, match="circle"):
        judge(m, {"circle": [det(0, 0, 5, 5)]})


# -- position -------------------------------------------------------------------------------


def test_relative_position_known_answers():
    b = (20, 20, 30, 30)  # centre (25, 25), 10x10
    assert relative_position((0, 20, 10, 30), b) == {"left of"}
    assert relative_position((40, 20, 50, 30), b) == {"right of"}
    assert relative_position((20, 0, 30, 10), b) == {"above"}  # y points down
    assert relative_position((20, 40, 30, 50), b) == {"below"}
    # diagonal: offset (-20, -20) shrunk by 0.1 * 20 to (-18, -18), / 28.28 -> both beyond 0.5
    assert relative_position((0, 0, 10, 10), b) == {"left of", "above"}
    # offset (-40, -25) shrunk to (-38, -23), / 47.17 -> (-0.81, -0.49): left only
    assert relative_position((-20, -5, -10, 5), b) == {"left of"}


def test_position_offset_shrinks_by_0_1_of_the_dimensions():
    # A 40 wide, B 40 wide, centres 10 apart in x: shrunk |dx| = max(10 - 0.1*80, 0) = 2,
    # normalised 2/10 = 0.2 < 0.5 -> no relation; with threshold 0 it is 1.0 -> left of
    a, b = (0, 0, 40, 10), (10, 0, 50, 10)
    assert relative_position(a, b) == set()
    assert relative_position(a, b, position_threshold=0.0) == {"left of"}
    # offset (-12, 4) with 10x10 boxes: shrunk (-10, 2), norm 12.65 -> dx -0.79, dy 0.16
    assert relative_position((3, 29, 13, 39), (15, 25, 25, 35)) == {"left of"}


def test_position_is_read_strictly_beyond_plus_minus_half():
    # widths 25 + 25, centres 10 apart: shrunk 10 - 5 = 5, normalised exactly -0.5: not "left of"
    assert relative_position((-12.5, 0, 12.5, 0), (-2.5, 0, 22.5, 0)) == set()
    # centres 10.5 apart: 5.5 / 10.5 = 0.52 -> "left of"
    assert relative_position((-13.0, 0, 12.0, 0), (-2.5, 0, 22.5, 0)) == {"left of"}
    # zero-size boxes, offset (-6, 8): (-0.6, 0.8) -> left of and below
    assert relative_position((0, 8, 0, 8), (6, 0, 6, 0)) == {"left of", "below"}


def test_position_clause_and_its_reasons():
    m = meta("position", [{"class": "square", "count": 1}, {"class": "circle", "count": 1, "position": ["left of", 0]}])
    square = det(20, 0, 30, 10)
    assert judge(m, {"square": [square], "circle": [det(0, 0, 10, 10)]}) == (True, "")
    ok, reason = judge(m, {"square": [square], "circle": [det(40, 0, 50, 10)]})
    assert not ok and reason == "expected circle left of target, found right of target"
    ok, reason = judge(m, {"square": [square], "circle": [det(20, 1, 30, 11)]})  # on top of it
    assert not ok and reason == "expected circle left of target, found  target"


def test_position_without_target_says_so():
    m = meta("position", [{"class": "square", "count": 1}, {"class": "circle", "count": 1, "position": ["above", 0]}])
    ok, reason = judge(m, {"circle": [det(0, 0, 10, 10)]})
    assert not ok and reason == "expected square>=1, found 0\nno target for circle to be above"


def test_position_checks_every_found_object_against_every_target():
    m = meta("position", [{"class": "square", "count": 2}, {"class": "circle", "count": 1, "position": ["left of", 0]}])
    squares = [det(20, 0, 30, 10, 0.9), det(-30, 0, -20, 10, 0.8)]  # the second is left of the circle
    ok, reason = judge(m, {"square": squares, "circle": [det(0, 0, 10, 10)]})
    assert not ok and reason == "expected circle left of target, found right of target"


def test_position_target_failing_its_colour_counts_as_no_target():
    m = meta(
        "position",
        [{"class": "square", "count": 1, "color": "red"}, {"class": "circle", "count": 1, "position": ["left of", 0]}],
    )
    ok, reason = judge(m, {"square": [det(20, 0, 30, 10, color="blue")], "circle": [det(0, 0, 10, 10)]})
    assert not ok and reason.endswith("no target for circle to be left of")


# -- summary ------------------------------------------------------------------------------


def test_summary_is_mean_of_tag_accuracies_not_of_images():
    rows = [{"tag": "single_object", "correct": True}] * 3 + [{"tag": "single_object", "correct": False}]
    rows += [{"tag": "counting", "correct": False}]
    s = summarize(rows)
    assert s["tags"] == {"single_object": 0.75, "counting": 0.0}
    assert s["overall"] == pytest.approx(0.375)  # images would give 3/5 = 0.6
    assert list(s["tags"]) == ["single_object", "counting"]  # order of first appearance


def test_summary_of_nothing_is_nan():
    assert math.isnan(summarize([])["overall"])
