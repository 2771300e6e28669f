"""GenEval's decision rules, shared by every detector backend.

Re-implements the rules of djghosh13/geneval, evaluation/evaluate_images.py (commit
16f1681) and evaluation/summary_scores.py, keeping its output strings and numbers:

- per class, detections with score > threshold (0.3; 0.9 for every class when the prompt's
  tag is `counting`), most confident first, at most 16, then greedy IoU suppression at
  `max_overlap` (1.0 disables it);
- `include` clauses all hold, each checked on its class's `count` most confident
  detections: enough of them, then the colour of each, then the position of each relative
  to every object matched by the target clause;
- an `exclude` clause with count N fails when N or more are found;
- summary: accuracy per tag over images, overall = unweighted mean of the tag accuracies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
MAX_OVERLAP = 1.0
POSITION_THRESHOLD = 0.1


@dataclass
class Detection:
    """One detected object: box = (x1, y1, x2, y2) in pixels, y down; score in [0, 1].

    `mask` is an optional (H, W) bool array; `color` one of COLORS once classified.
    """

    box: tuple[float, float, float, float]
    score: float
    mask: Any = None
    color: str | None = None

    def __post_init__(self):
        self.box = tuple(float(v) for v in self.box)
        if len(self.box) != 4:
            raise ValueError(f"a box has 4 numbers (x1, y1, x2, y2), got {self.box}")
        self.score = float(self.score)


def box_iou(a, b) -> float:
    """IoU with GenEval's inclusive-pixel convention (+1 on each side length)."""

    def area(x1, y1, x2, y2):
        return max(x2 - x1 + 1, 0) * max(y2 - y1 + 1, 0)

    inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(*a[:4]) + area(*b[:4]) - inter
    return inter / union if union else 0.0


def select(
    raw: Mapping[str, Sequence[Detection]],
    tag: str,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = MAX_OVERLAP,
) -> dict[str, list[Detection]]:
    """From raw per-class detections to the objects GenEval judges.

    Per class: keep score > threshold (counting_threshold for the `counting` tag), sort by
    score, highest first (ties: the later detection first, as GenEval's reversed
    `np.argsort` orders them), keep at most `max_objects`, then greedily drop every
    detection whose IoU with an already kept one is >= max_overlap (skipped when 1.0).
    Classes with nothing left are absent from the result.
    """
    t = counting_threshold if tag == "counting" else threshold
    out: dict[str, list[Detection]] = {}
    for name, dets in raw.items():
        order = sorted(range(len(dets)), key=lambda i: (-dets[i].score, -i))
        cand = [dets[i] for i in order if dets[i].score > t][:max_objects]
        kept: list[Detection] = []
        while cand:
            best = cand.pop(0)
            kept.append(best)
            if max_overlap != 1:
                cand = [d for d in cand if box_iou(best.box, d.box) < max_overlap]
        if kept:
            out[name] = kept
    return out


def relative_position(box_a, box_b, position_threshold: float = POSITION_THRESHOLD) -> set[str]:
    """Relations of box A relative to box B ("left of", "right of", "above", "below").

    The centre offset is shrunk by position_threshold * (dim_a + dim_b) per axis (never
    past zero); a relation holds when the shrunk offset, divided by the length of the
    unshrunk offset, is beyond +-0.5 along its axis.
    """
    a = np.asarray(box_a[:4], dtype=np.float64)
    b = np.asarray(box_b[:4], dtype=np.float64)
    offset = (a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2
    dims = np.abs(a[2:] - a[:2]) + np.abs(b[2:] - b[:2])
    shrunk = np.maximum(np.abs(offset) - position_threshold * dims, 0) * np.sign(offset)
    if np.all(np.abs(shrunk) < 1e-3):
        return set()
    dx, dy = shrunk / np.linalg.norm(offset)
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


def judge(
    metadata: Mapping, objects: Mapping[str, Sequence[Detection]], position_threshold: float = POSITION_THRESHOLD
) -> tuple[bool, str]:
    """Decide whether the selected `objects` satisfy a GenEval prompt's `metadata`.

    `objects` maps class name to detections sorted by confidence (as `select` returns);
    detections used by a colour clause must have `color` set. Returns (correct, reason),
    where reason joins GenEval's failure messages with newlines ("" when correct).
    """
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []  # objects matched by each include clause
    for clause in metadata.get("include", []):
        name, count = clause["class"], clause["count"]
        found = list(objects.get(name, []))[:count]
        ok = True
        if len(found) < count:
            ok = False
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in clause:
                want = clause["color"]
                colors = []
                for d in found:
                    if d.color is None:
                        raise ValueError(f"detection of {name!r} has no colour but the prompt asks for one")
                    colors.append(d.color)
                if colors.count(want) < count:
                    ok = False
                    seen = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    reasons.append(f"expected {want} {name}>={count}, found {colors.count(want)} {want}; and {seen}")
            if "position" in clause and ok:
                rel, target = clause["position"]
                if groups[target] is None:
                    ok = False
                    reasons.append(f"no target for {name} to be {rel}")
                else:
                    for d in found:
                        for t in groups[target]:
                            rels = relative_position(d.box, t.box, position_threshold)
                            if rel not in rels:
                                ok = False
                                # sorted: a set's order varies from process to process
                                found_rels = " and ".join(sorted(rels))
                                reasons.append(f"expected {name} {rel} target, found {found_rels} target")
                                break
                        if not ok:
                            break
        correct = correct and ok
        groups.append(found if ok else None)
    for clause in metadata.get("exclude", []):
        name, count = clause["class"], clause["count"]
        n = len(objects.get(name, []))
        if n >= count:
            correct = False
            reasons.append(f"expected {name}<{count}, found {n}")
    return correct, "\n".join(reasons)


def summarize(rows: Sequence[Mapping]) -> dict:
    """GenEval's summary: {"tags": {tag: accuracy over images}, "overall": mean over tags}.

    Tags appear in order of first appearance, as in GenEval's summary_scores.py.
    """
    hits: dict[str, list[bool]] = {}
    for r in rows:
        hits.setdefault(r["tag"], []).append(bool(r["correct"]))
    tags = {t: sum(v) / len(v) for t, v in hits.items()}
    overall = sum(tags.values()) / len(tags) if tags else math.nan
    return {"tags": tags, "overall": overall}


def empty_rates(rows: Sequence[Mapping]) -> dict:
    """A collapse diagnostic beside GenEval's score (not part of GenEval): the share of
    images in which nothing was kept (no detection of any class above the threshold), over
    all images and per tag. Reads each row's `details` (the kept boxes per class)."""
    flags: dict[str, list[bool]] = {}
    for r in rows:
        details = r["details"] if isinstance(r["details"], Mapping) else json.loads(r["details"])
        flags.setdefault(r["tag"], []).append(not any(details.values()))
    every = [f for v in flags.values() for f in v]
    return {"overall": sum(every) / len(every) if every else math.nan, "tags": {t: sum(v) / len(v) for t, v in flags.items()}}
