"""Figures (matplotlib, Agg): each function returns a figure; `save` writes it as PNG and PDF.

- `geneval_bars`: GenEval accuracy per tag and overall, one bar per run, 95% CI whiskers;
- `metrics_by_run`: GenEval overall and each preference metric, a dot per run, CI whiskers;
- `metric_vs_nfe`: each metric against network evaluations per image, teachers as a line;
- `reward_vs_geneval`: each training reward's metric against GenEval overall, per run (does
  what the RL methods optimise carry over to the unseen metric?);
- `training_curves`: the training logs' quantities (losses, rewards, GDMD's weights,
  DMDR's schedules) against the iteration, seeds as mean and min-max band per run;
- `study_grid`: one grid per study, a row per run, the same prompts and noise seeds in every
  row (every run samples image k of prompt i from the same noise), so runs compare by eye.
All read score tables, logs or image folders only.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from eval.geneval.folder import list_samples, load_image  # noqa: E402

from .tables import GENEVAL_COLUMNS, TAGS  # noqa: E402


def save(fig, png: Path, pdf: Path | None = None, dpi: int = 120) -> None:
    """The figure as PNG (and PDF), then closed."""
    fig.savefig(png, dpi=fig.get_dpi() if dpi is None else dpi, format="png", bbox_inches="tight")
    if pdf is not None:
        fig.savefig(pdf, format="pdf", bbox_inches="tight")
    plt.close(fig)


def _measured(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["source"].fillna("") == ""] if "source" in table else table


def _err(row, col) -> float:
    v = row.get(f"{col}_ci95", np.nan)
    return 0.0 if pd.isna(v) else float(v)


def geneval_bars(table: pd.DataFrame):
    """Grouped bars: GenEval accuracy per tag (and overall) for every measured run."""
    table = _measured(table)
    cols = list(GENEVAL_COLUMNS)
    x = np.arange(len(cols))
    width = 0.8 / max(len(table), 1)
    fig, ax = plt.subplots(figsize=(max(10, 1.2 * len(table)), 4))
    for i, (_, r) in enumerate(table.iterrows()):
        ax.bar(x + i * width, [r[c] for c in cols], width, yerr=[_err(r, c) for c in cols], capsize=2,
               label=f"{r['run']} (n={r['seeds']})")  # fmt: skip
    ax.set_xticks(x + width * (len(table) - 1) / 2, ["overall", *TAGS], rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("GenEval accuracy (95% CI over seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _metrics(table: pd.DataFrame) -> list[str]:
    from .tables import metric_columns

    return [c for c in metric_columns(table) if c not in TAGS and not c.startswith("empty")]


def metrics_by_run(table: pd.DataFrame):
    """One panel per metric (GenEval overall and each preference metric): a dot per measured
    run in table order with its 95% CI whisker (teachers grey squares). Dots, not bars: the
    axes do not start at zero, and a truncated bar would exaggerate the differences."""
    table = _measured(table)
    metrics = _metrics(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4, 0.55 * len(table)) * len(metrics), 3.6), squeeze=False)
    x = np.arange(len(table))
    teacher = (table["method"] == "teacher").to_numpy()
    for ax, m in zip(axes[0], metrics):
        err = np.array([_err(r, m) for _, r in table.iterrows()], dtype=float)
        for mask, marker, color in ((teacher, "s", "tab:gray"), (~teacher, "o", "tab:blue")):
            ax.errorbar(x[mask], table[m].to_numpy()[mask], yerr=err[mask], marker=marker, color=color,
                        linestyle="", capsize=3)  # fmt: skip
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(-0.5, len(table) - 0.5)
        ax.set_xticks(x, [f"{r} (n={n})" for r, n in zip(table["run"], table["seeds"])], rotation=60, ha="right", fontsize=7)
        ax.set_title(m, fontsize=9)
    fig.tight_layout()
    return fig


def metric_vs_nfe(table: pd.DataFrame):
    """One panel per metric (GenEval overall and the preference metrics) against NFE."""
    table = _measured(table)
    metrics = _metrics(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    teachers = table[table["method"] == "teacher"].sort_values("nfe")
    for ax, m in zip(axes[0], metrics):
        if len(teachers):
            ax.errorbar(teachers["nfe"], teachers[m], yerr=[_err(r, m) for _, r in teachers.iterrows()], marker="o",
                        color="k", label="teacher", capsize=2)  # fmt: skip
        for _, r in table[table["method"] != "teacher"].iterrows():
            ax.errorbar([r["nfe"]], [r[m]], yerr=[_err(r, m)], marker="s", linestyle="", capsize=2, label=r["run"])
        ax.set_xscale("log")
        ax.set_xlabel("NFE per image")
        ax.set_title(m, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def reward_vs_geneval(table: pd.DataFrame, rewards: list[str]):
    """Each reward metric (x) against GenEval overall (y), one point per measured run."""
    table = _measured(table)
    rewards = [m for m in rewards if m in table.columns] or _metrics(table)[1:]
    fig, axes = plt.subplots(1, len(rewards), figsize=(4.5 * len(rewards), 3.6), squeeze=False)
    for ax, m in zip(axes[0], rewards):
        for _, r in table.iterrows():
            ax.errorbar([r[m]], [r["geneval_overall"]], xerr=[_err(r, m)], yerr=[_err(r, "geneval_overall")], marker="o",
                        capsize=2, label=r["run"])  # fmt: skip
        ax.set_xlabel(f"{m} (training reward's metric)")
        ax.set_ylabel("GenEval overall (unseen)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# quantities of the training logs worth a panel, in this order (present ones are drawn)
CURVES = (
    "dmd_loss", "fake_loss", "grad_norm_generator", "g_abs", "nft_loss", "napo_loss", "reward_loss",
    "reward_shapes_clipscore", "reward_shapes_aesthetic", "reward_x", "reward_target",
    "napo_r_mean", "napo_r_std", "napo_w_mean", "napo_w_std", "best_not_smallest_tau",
    "real_lora_scale", "dynars_a", "dynars_b", "real_cfg", "cold_start",
)  # fmt: skip
_SEED = re.compile(r"^(?P<run>.+)/seed(?P<seed>\d+)$")


def read_logs(files: list[Path]) -> dict[str, list[pd.DataFrame]]:
    """Training logs `.../<run>/seed<k>.csv` (or a checkpoint's `.../<run>/seed<k>/final/metrics.csv`),
    grouped by run."""
    runs: dict[str, list[pd.DataFrame]] = {}
    for f in map(Path, files):
        if f.name == "metrics.csv":  # <run>/seed<k>/final/metrics.csv
            run = f.parent.parent.parent.name
        else:  # <run>/seed<k>.csv
            run = f.parent.name
        runs.setdefault(run, []).append(pd.read_csv(f))
    return runs


def training_curves(files: list[Path], window: int = 20):
    """One panel per logged quantity (CURVES present in the logs), one line per run: the mean
    over seeds (smoothed over `window` logged values) with the seeds' min-max as a band."""
    runs = read_logs(files)
    keys = [k for k in CURVES if any(k in df.columns for dfs in runs.values() for df in dfs)]
    cols = min(4, max(len(keys), 1))
    nrows = -(-max(len(keys), 1) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
    colors = {run: f"C{i % 10}" for i, run in enumerate(runs)}  # one colour per run in every panel
    for ax, key in zip(axes.flat, keys):
        for run, dfs in runs.items():
            series = []
            for df in dfs:
                if key in df.columns:
                    s = df[["iteration", key]].dropna().set_index("iteration")[key]
                    series.append(s.rolling(window, min_periods=1).mean())
            if not series:
                continue
            both = pd.concat(series, axis=1)
            ax.plot(both.index, both.mean(axis=1), color=colors[run], label=f"{run} (n={len(series)})")
            if len(series) > 1:
                ax.fill_between(both.index, both.min(axis=1), both.max(axis=1), color=colors[run], alpha=0.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def sample_grid(images_dir: Path, prompts_per_tag: int = 4, max_samples: int = 4):
    """A grid of one folder: for the first prompts of every tag, a row of samples."""
    samples = list_samples(images_dir)
    rows: dict[str, list] = {}
    for s in samples:
        key, tag = s.metadata["prompt"], s.metadata["tag"]
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
    return fig


def study_grid(folders: list[Path], per_tag: int = 2):
    """Rows: runs (one folder each, e.g. every run's seed-0 samples); columns: the first
    `per_tag` prompts of every tag, image 0, the same prompt and noise in every row."""
    picked: list[tuple[int, str]] = []
    first = list_samples(folders[0])
    for s in first:
        if s.index not in {i for i, _ in picked} and sum(1 for _, t in picked if t == s.metadata["tag"]) < per_tag:
            picked.append((s.index, s.metadata["tag"]))
    prompts = {s.index: s.metadata["prompt"] for s in first}
    cols = len(picked)
    fig, axes = plt.subplots(len(folders), cols, figsize=(1.1 * cols + 1.5, 1.2 * len(folders) + 1.4), squeeze=False)
    for i, folder in enumerate(map(Path, folders)):
        by_index = {(s.index, s.sample): s.path for s in list_samples(folder)}
        for j, (idx, _) in enumerate(picked):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if (idx, 0) in by_index:
                ax.imshow(load_image(by_index[(idx, 0)]), interpolation="nearest")
            if i == 0:
                ax.set_title(prompts[idx], fontsize=5, wrap=True)
        axes[i, 0].set_ylabel(f"{folder.parent.name}\n{folder.name}", fontsize=7, rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig
