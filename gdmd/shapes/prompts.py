"""Prompts of the shapes world in GenEval's schema, and scenes that satisfy (or violate) them.

Three things live here:

- `evaluation_metadata(per_tag, seed)`: the fixed evaluation set, GenEval-schema dicts
  (`tag`, `prompt`, `include`, `exclude`) for all six tags, written with GenEval's own
  templates (djghosh13/geneval, prompts/create_prompts.py): "a photo of a red circle",
  "a photo of three squares", "a photo of a circle left of a square", ...
- `scene_for(metadata, rng)` / `violating_scene(metadata, rng)`: ground-truth scenes that
  a perfect generator would draw for a prompt, and scenes that break exactly one clause.
- `TrainingCaptions`: the training caption distribution. It describes random scenes with
  the same six kinds of content but a family of phrasings ("an image of ...", "a picture
  of ...", bare noun phrases, GenEval's "a photo of ..."), and never emits a string of
  the evaluation set: training and evaluation prompts are disjoint as strings, while
  every word and construction of the evaluation set is seen in training.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from .world import COLORS, DEFAULT_RESOLUTION, SHAPES, ShapeObject

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}
COLOR_NAMES = tuple(COLORS)


def with_article(word_phrase: str) -> str:
    # GenEval's rule: "an" before a vowel letter
    return ("an " if word_phrase[0] in "aeiou" else "a ") + word_phrase


def plural(name: str) -> str:
    return name + ("es" if name.endswith("s") else "s")


# ---------------------------------------------------------------------------------------
# Evaluation set


def all_prompts(tag: str) -> list[dict]:
    """Every distinct GenEval-template prompt of `tag` in the shapes world, in a fixed order."""
    out = []
    if tag == "single_object":
        for s in SHAPES:
            out.append(dict(tag=tag, include=[{"class": s, "count": 1}], prompt=f"a photo of {with_article(s)}"))
    elif tag == "two_object":
        for a, b in itertools.permutations(SHAPES, 2):
            out.append(
                dict(
                    tag=tag,
                    include=[{"class": a, "count": 1}, {"class": b, "count": 1}],
                    prompt=f"a photo of {with_article(a)} and {with_article(b)}",
                )
            )
    elif tag == "counting":
        for s in SHAPES:
            for n in (2, 3, 4):  # GenEval counts 2..4 and excludes n + 1
                out.append(
                    dict(
                        tag=tag,
                        include=[{"class": s, "count": n}],
                        exclude=[{"class": s, "count": n + 1}],
                        prompt=f"a photo of {NUMBERS[n]} {plural(s)}",
                    )
                )
    elif tag == "colors":
        for s in SHAPES:
            for c in COLOR_NAMES:
                out.append(
                    dict(tag=tag, include=[{"class": s, "count": 1, "color": c}], prompt=f"a photo of {with_article(c)} {s}")
                )
    elif tag == "position":
        for a, b in itertools.permutations(SHAPES, 2):
            for rel in RELATIONS:
                # GenEval's clause order: the target (b) first, then a with (relation, 0)
                out.append(
                    dict(
                        tag=tag,
                        include=[{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}],
                        prompt=f"a photo of {with_article(a)} {rel} {with_article(b)}",
                    )
                )
    elif tag == "color_attr":
        for a, b in itertools.permutations(SHAPES, 2):
            for ca, cb in itertools.permutations(COLOR_NAMES, 2):
                out.append(
                    dict(
                        tag=tag,
                        include=[{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}],
                        prompt=f"a photo of {with_article(ca)} {a} and {with_article(cb)} {b}",
                    )
                )
    else:
        raise ValueError(f"unknown GenEval tag {tag!r}; known: {', '.join(TAGS)}")
    return out


def template_prompts() -> frozenset[str]:
    """Every string GenEval's templates can make in the shapes world (all six tags).

    The training caption distribution excludes all of them, so it stays disjoint from
    any evaluation set, whatever its size or seed.
    """
    return frozenset(r["prompt"] for tag in TAGS for r in all_prompts(tag))


def evaluation_metadata(per_tag: int = 50, seed: int = 0) -> list[dict]:
    """The fixed evaluation set: `per_tag` entries for each of the six tags, tag by tag.

    Where a tag has at least `per_tag` distinct prompts, a random subset without repeats is
    taken; where it has fewer (single_object has 3, two_object 6, counting 9, position 24,
    colors 30), every prompt appears and the list cycles through a shuffled order, so the
    entries are spread evenly over the prompts. Each entry gets its own sample seeds.
    """
    if per_tag < 1:
        raise ValueError(f"per_tag must be >= 1, got {per_tag}")
    rng = np.random.default_rng(seed)
    rows = []
    for tag in TAGS:
        pool = all_prompts(tag)
        order = rng.permutation(len(pool))
        rows.extend(pool[order[i % len(pool)]] for i in range(per_tag))
    return [json.loads(json.dumps(r)) for r in rows]  # deep copies, JSON-normalised


def write_metadata(rows: list[dict], path: str | Path) -> None:
    from gdmd.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ---------------------------------------------------------------------------------------
# Scene layout

MARGIN = 1.0  # px between a box and the image border
GAP = 2.0  # px between two boxes


def _fits(box, others, res) -> bool:
    x1, y1, x2, y2 = box
    if x1 < MARGIN or y1 < MARGIN or x2 > res - MARGIN or y2 > res - MARGIN:
        return False
    for o in others:
        ox1, oy1, ox2, oy2 = o.box
        if x1 < ox2 + GAP and ox1 < x2 + GAP and y1 < oy2 + GAP and oy1 < y2 + GAP:
            return False
    return True


def _size_range(n_objects: int, res: int) -> tuple[float, float]:
    # object sides as fractions of the image: big when alone, smaller when crowded
    lo, hi = {1: (0.30, 0.45), 2: (0.25, 0.36), 3: (0.20, 0.28), 4: (0.19, 0.25)}.get(n_objects, (0.17, 0.22))
    return lo * res, hi * res


def place(specs: list[tuple[str, str]], rng: np.random.Generator, res: int = DEFAULT_RESOLUTION) -> list[ShapeObject]:
    """Place objects (shape, colour) at random, non-overlapping, inside the image."""
    lo, hi = _size_range(len(specs), res)
    for _ in range(1000):
        objs: list[ShapeObject] = []
        for shape, color in specs:
            for _ in range(100):
                s = rng.uniform(lo, hi)
                cx, cy = rng.uniform(MARGIN + s / 2, res - MARGIN - s / 2, size=2)
                o = ShapeObject(shape, color, float(cx), float(cy), float(s))
                if _fits(o.box, objs, res):
                    objs.append(o)
                    break
            else:
                break
        if len(objs) == len(specs):
            return objs
    raise RuntimeError(f"could not place {len(specs)} objects in a {res}px image")


def place_relative(a: tuple[str, str], rel: str, b: tuple[str, str], rng, res: int = DEFAULT_RESOLUTION):
    """Place object a `rel` object b (GenEval's sense, y down), clearly enough for its test.

    The offset along the relation's axis is at least the half-sizes plus a gap; the offset
    across it is at most 0.3 of that, so the normalised offset is well beyond +-0.5.
    """
    if rel not in RELATIONS:
        raise ValueError(f"unknown relation {rel!r}; known: {', '.join(RELATIONS)}")
    lo, hi = _size_range(2, res)
    axis, sign = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}[rel]
    for _ in range(10000):
        sa, sb = rng.uniform(lo, hi, size=2)
        cb = rng.uniform(MARGIN + sb / 2, res - MARGIN - sb / 2, size=2)
        along = rng.uniform((sa + sb) / 2 + GAP + 1, res)
        across = rng.uniform(-0.3, 0.3) * along
        ca = cb.copy()
        ca[axis] += sign * along
        ca[1 - axis] += across
        ob = ShapeObject(b[0], b[1], float(cb[0]), float(cb[1]), float(sb))
        oa = ShapeObject(a[0], a[1], float(ca[0]), float(ca[1]), float(sa))
        if _fits(ob.box, [], res) and _fits(oa.box, [ob], res):
            return [oa, ob]
    raise RuntimeError(f"could not place a {a[0]} {rel} a {b[0]} in a {res}px image")


def _color(rng) -> str:
    return COLOR_NAMES[rng.integers(len(COLOR_NAMES))]


def scene_for(metadata: dict, rng: np.random.Generator, res: int = DEFAULT_RESOLUTION) -> list[ShapeObject]:
    """A scene that satisfies a GenEval-schema prompt of the shapes world exactly.

    Attributes the prompt leaves open (colour, place, size) are random; a counting prompt
    gets exactly `count` objects.
    """
    inc = metadata["include"]
    tag = metadata["tag"]
    if tag == "position":
        target, mover = inc
        return place_relative(
            (mover["class"], mover.get("color") or _color(rng)),
            mover["position"][0],
            (target["class"], target.get("color") or _color(rng)),
            rng,
            res,
        )
    specs = [(c["class"], c.get("color") or _color(rng)) for c in inc for _ in range(c["count"])]
    return place(specs, rng, res)


def violating_scene(metadata: dict, rng: np.random.Generator, res: int = DEFAULT_RESOLUTION) -> tuple[list[ShapeObject], str]:
    """A scene that breaks the prompt in one way, and the name of that way.

    single_object / two_object: an object is missing (replaced by another shape);
    counting: one object too few or too many; colors / color_attr: a wrong colour;
    position: the two objects swapped (a is placed on the opposite side of b).
    """
    inc = metadata["include"]
    tag = metadata["tag"]
    others = lambda s: [x for x in SHAPES if x != s]  # noqa: E731
    if tag in ("single_object", "two_object"):
        k = rng.integers(len(inc))
        present = {c["class"] for c in inc}
        spare = [x for x in SHAPES if x not in present] or others(inc[k]["class"])
        specs = [(c["class"] if i != k else spare[rng.integers(len(spare))], _color(rng)) for i, c in enumerate(inc)]
        return place(specs, rng, res), "missing object"
    if tag == "counting":
        n = inc[0]["count"] + (-1 if rng.random() < 0.5 else 1)
        return place([(inc[0]["class"], _color(rng))] * n, rng, res), "wrong count"
    if tag in ("colors", "color_attr"):
        k = rng.integers(len(inc))
        specs = []
        for i, c in enumerate(inc):
            color = c["color"]
            if i == k:
                color = [x for x in COLOR_NAMES if x != color][rng.integers(len(COLOR_NAMES) - 1)]
            specs.append((c["class"], color))
        return place(specs, rng, res), "wrong colour"
    if tag == "position":
        target, mover = inc
        opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
        objs = place_relative(
            (mover["class"], _color(rng)), opposite[mover["position"][0]], (target["class"], _color(rng)), rng, res
        )
        return objs, "swapped position"
    raise ValueError(f"unknown GenEval tag {tag!r}; known: {', '.join(TAGS)}")


# ---------------------------------------------------------------------------------------
# Training captions

PREFIXES = ("a photo of ", "an image of ", "a picture of ", "a drawing of ", "")
# Appended to every caption that would equal an evaluation prompt (and, so that a suffix is
# not a sign of one, to a share of the others). The evaluation prompt is then a prefix of
# a training caption: a causal text encoder gives its tokens the very states it gives
# them in training, while the string itself is never a training caption.
SUFFIXES = (" on a grey background", " on a plain background")
SUFFIX_SHARE = 0.2


def _np(shape: str, color: str | None) -> str:
    return with_article(f"{color} {shape}" if color else shape)


def _clause(shape: str, count: int = 1, color: str | None = None, **extra) -> dict:
    c = {"class": shape, "count": count}
    if color:
        c["color"] = color
    c.update(extra)
    return c


class TrainingCaptions:
    """The training distribution: random scenes of the six kinds, each with a caption.

    Captions use GenEval's constructions under several phrasings (PREFIXES), mention
    colours on about half of the objects they would leave open, and count from 2 to 5.
    Each caption comes with its GenEval-schema metadata, so whether any caption is true of
    any scene can be decided exactly (`gdmd.shapes.detector.truth`). A caption equal to a
    string in `exclude` (the evaluation prompts) gets a SUFFIXES suffix, as do
    SUFFIX_SHARE of the others, so no evaluation prompt is ever a training caption.
    """

    def __init__(self, exclude=(), resolution: int = DEFAULT_RESOLUTION, seed: int = 0):
        self.exclude = frozenset(exclude)
        self.resolution = resolution
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[list[ShapeObject], str, dict]:
        """One (scene, caption, metadata) triple."""
        objs, caption, meta = self._draw()
        if caption in self.exclude or self.rng.random() < SUFFIX_SHARE:
            caption += SUFFIXES[self.rng.integers(len(SUFFIXES))]
        meta["prompt"] = caption
        return objs, caption, meta

    def batch(self, n: int) -> tuple[list[list[ShapeObject]], list[str], list[dict]]:
        triples = [self.sample() for _ in range(n)]
        return [t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples]

    def _draw(self):
        rng, res = self.rng, self.resolution
        kind = TAGS[rng.integers(len(TAGS))]
        prefix = PREFIXES[rng.integers(len(PREFIXES))]
        shape = lambda: SHAPES[rng.integers(len(SHAPES))]  # noqa: E731
        say_color = lambda: rng.random() < 0.5  # noqa: E731
        if kind in ("single_object", "colors"):
            s, c = shape(), _color(rng)
            named = c if (kind == "colors" or say_color()) else None
            meta = dict(tag=kind, include=[_clause(s, 1, named)])
            return place([(s, c)], rng, res), prefix + _np(s, named), meta
        if kind in ("two_object", "color_attr"):
            a, b = rng.choice(len(SHAPES), size=2, replace=False)
            a, b = SHAPES[a], SHAPES[b]
            ca, cb = _color(rng), _color(rng)
            if not (kind == "color_attr" or say_color()):
                ca = cb = None
            text = f"{_np(a, ca)} and {_np(b, cb)}"
            meta = dict(tag=kind, include=[_clause(a, 1, ca), _clause(b, 1, cb)])
            objs = place([(a, ca or _color(rng)), (b, cb or _color(rng))], rng, res)
            return objs, prefix + text, meta
        if kind == "counting":
            s, n = shape(), int(rng.integers(2, 6))
            c = _color(rng) if say_color() else None
            meta = dict(tag=kind, include=[_clause(s, n, c)], exclude=[_clause(s, n + 1)])
            objs = place([(s, c or _color(rng)) for _ in range(n)], rng, res)
            words = f"{NUMBERS[n]} {c} {plural(s)}" if c else f"{NUMBERS[n]} {plural(s)}"
            return objs, prefix + words, meta
        # position
        a, b = rng.choice(len(SHAPES), size=2, replace=False)
        a, b = SHAPES[a], SHAPES[b]
        rel = RELATIONS[rng.integers(len(RELATIONS))]
        ca, cb = (_color(rng), _color(rng)) if say_color() else (None, None)
        objs = place_relative((a, ca or _color(rng)), rel, (b, cb or _color(rng)), rng, res)
        meta = dict(tag=kind, include=[_clause(b, 1, cb), _clause(a, 1, ca, position=[rel, 0])])
        return objs, f"{prefix}{_np(a, ca)} {rel} {_np(b, cb)}", meta


def vocabulary() -> list[str]:
    """Every word a shapes-world prompt or caption can contain, sorted."""
    words = set()
    for p in PREFIXES + SUFFIXES:
        words.update(p.split())
    words.update(["a", "an", "and", "of", "photo"])
    words.update(SHAPES)
    words.update(plural(s) for s in SHAPES)
    words.update(COLOR_NAMES)
    words.update(NUMBERS.values())
    for r in RELATIONS:
        words.update(r.split())
    return sorted(words)


class ShapesPrompts:
    """Training prompts of the shapes world: its training caption distribution, and real
    images for them (renders of the scenes the captions describe) for methods that want them."""

    def __init__(self, seed: int, resolution: int = 32):
        self.resolution = resolution
        self.captions = TrainingCaptions(exclude=template_prompts(), resolution=resolution, seed=seed)
        self.rng = self.captions.rng  # checkpointed with the run

    def batch(self, n: int, images: bool = False):
        """(captions, images): images (B, 3, H, W) in [0, 1] if asked for, else None."""
        from gdmd.shapes.pretrain import to_tensor
        from gdmd.shapes.world import render_batch

        scenes, captions, _ = self.captions.batch(n)
        return captions, (to_tensor(render_batch(scenes, self.resolution)) if images else None)
