"""Figures: per-tag GenEval bars and sample grids (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from eval.geneval.folder import list_samples, load_image  # noqa: E402

from .tables import TAGS  # noqa: E402


def geneval_bars(table: pd.DataFrame, out: Path) -> None:
    """Grouped bars: GenEval accuracy per tag (and overall) for every run."""
    cols = ["geneval_overall", *TAGS]
    x = np.arange(len(cols))
    width = 0.8 / max(len(table), 1)
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, (_, r) in enumerate(table.iterrows()):
        err = [r.get(f"{c}_ci95", np.nan) for c in cols]
        ax.bar(x + i * width, [r[c] for c in cols], width, yerr=np.nan_to_num(err), label=r["run"])
    ax.set_xticks(x + width * (len(table) - 1) / 2, ["overall", *TAGS], rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("GenEval accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)


def sample_grid(images_dir: Path, out: Path, prompts_per_tag: int = 4, max_samples: int = 4) -> None:
    """A grid: for the first prompts of every tag, a row of samples with the prompt as label."""
    samples = list_samples(images_dir)
    rows: dict[str, list] = {}
    for s in samples:
        key = s.metadata["prompt"]
        tag = s.metadata["tag"]
        if key not in rows and sum(1 for k in rows.values() if k[0] == tag) >= prompts_per_tag:
            continue
        entry = rows.setdefault(key, [tag, []])
        if len(entry[1]) < max_samples:
            entry[1].append(s.path)
    n = len(rows)
    fig, axes = plt.subplots(n, max_samples, figsize=(max_samples * 1.2 + 3.5, n * 1.2), squeeze=False)
    for i, (prompt, (_, paths)) in enumerate(rows.items()):
        for j in range(max_samples):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(paths):
                ax.imshow(load_image(paths[j]), interpolation="nearest")
        axes[i, 0].text(-0.1, 0.5, prompt, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(left=0.45, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.1)
    fig.savefig(out, dpi=100, format="png", bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)


CURVES = ("dmd_loss", "fake_loss", "grad_norm_generator", "g_abs")


def training_curves(run_dirs: list[Path], out: Path, window: int = 20) -> None:
    """One panel per logged quantity (CURVES present in the logs), one line per run/seed.

    Each run directory is a final checkpoint `.../train/<run>/seed<k>/final` with metrics.csv.
    """
    logs = []
    for d in map(Path, run_dirs):
        df = pd.read_csv(d / "metrics.csv")
        logs.append((f"{d.parent.parent.name} {d.parent.name}", df))
    keys = [k for k in CURVES if any(k in df.columns for _, df in logs)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, df in logs:
            if key in df.columns:
                s = df[["iteration", key]].dropna()
                ax.plot(s["iteration"], s[key].rolling(window, min_periods=1).mean(), label=label)
        ax.set_title(key)
        ax.set_xlabel("iteration")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
