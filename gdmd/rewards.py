"""Training rewards: eval.preference scorers on decoded generator samples (DESIGN.md, Rewards).

A run's `train.rewards: [{metric, weight, margin}]` names scorers of `eval.preference`; their
weight paths are the study's `preference.weights` (the run settings' `weights`). `Rewards`
decodes model-space tensors to images in [0, 1] through the backbone and returns each
metric's per-sample values; the methods combine them:
- `total`: sum_j weight_j R_j, the scalar reward of NFT and NaPO (DiffusionNFT's weighted
  "avg" over its reward functions, NVlabs/DiffusionNFT scripts/train_nft_sd3.py);
- `hinge`: sum_j weight_j relu(margin_j - R_j), the ReFL loss of dmd_refl and DMDR.
Gradients flow through decode and the scorer into the samples when the caller asks for
them (ReFL); the scorers' own weights are frozen, so no reward model ever trains. For
forward-only scoring (NFT, IGS) call it under `torch.no_grad()`.

GenEval (the shapes detector) is not a scorer here: it stays an unseen metric.
"""

from __future__ import annotations

import torch

from eval.preference import get_scorer
from gdmd.losses import refl_hinge


def _freeze(scorer) -> None:
    for value in vars(scorer).values():
        if isinstance(value, torch.nn.Module):
            value.eval().requires_grad_(False)


class Rewards:
    def __init__(self, terms, weights: dict, backbone):
        self.terms = tuple(terms)
        self.backbone = backbone
        self.scorers = {}
        for t in self.terms:
            if t.metric not in self.scorers:
                self.scorers[t.metric] = get_scorer(t.metric, weights, device=backbone.device)
                _freeze(self.scorers[t.metric])

    def __call__(self, x: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Each metric's rewards (B,) of model-space samples x (B, C, H, W) for `prompts`."""
        images = self.backbone.decode(x)
        return {name: s.reward(images, list(prompts)).float() for name, s in self.scorers.items()}

    def total(self, per_metric: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum_j weight_j R_j, (B,)."""
        return sum(t.weight * per_metric[t.metric] for t in self.terms)

    def hinge(self, per_metric: dict[str, torch.Tensor]):
        """sum_j weight_j relu(margin_j - R_j) (mean over the batch), and its metrics."""
        loss, metrics = 0.0, {}
        for t in self.terms:
            term, m = refl_hinge(per_metric[t.metric], t.margin)
            loss = loss + t.weight * term
            metrics[f"hinge_active_{t.metric}"] = m["hinge_active"]
        return loss, metrics

    @staticmethod
    def log(per_metric: dict[str, torch.Tensor], prefix: str = "reward") -> dict[str, float]:
        """Mean of each metric, as `<prefix>_<metric>` columns of the training log."""
        return {f"{prefix}_{name}": v.detach().mean().item() for name, v in per_metric.items()}
