"""The methods' typed configs (a run's `train:` section), with every key's range.

This module imports neither torch nor the methods' code: the DAG checks every run's
`train:` section against these classes when it parses the config (every SLURM job parses
it again, so the parse stays light). Keys marked (inferred) are choices the GDMD paper
does not state; docs/methods.md lists them with their alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gdmd.config import param

# DMDR's LoRA targets (vvvvvjdy/dmdr at 3af9698, train_sd3_refl_deepspeed.py): both streams'
# attention projections of every SD3 joint block; gdmd.lora uses them
LORA_TARGETS = ("attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out",
                "attn.to_k", "attn.to_out.0", "attn.to_q", "attn.to_v")  # fmt: skip

# training prompt sources: name -> "module:class" (see gdmd.prompts), imported when a run trains
PROMPT_SOURCES = {"shapes": "gdmd.shapes.prompts:ShapesPrompts", "captions": "gdmd.prompts:CaptionPrompts"}


@dataclass(frozen=True)
class DMDConfig:
    iterations: int = param(1000, ge=1)  # critic updates; the generator updates every `gen_every`
    batch_size: int = param(32, ge=1)
    gen_every: int = param(5, ge=1)  # DMD2: 5 (SD1.5) or 10 (SDXL)
    tau_min: float = param(0.02, ge=0.0, le=1.0)  # DMD2's renoise range
    tau_max: float = param(0.98, ge=0.0, le=1.0)
    real_cfg_scale: float = param(4.0, ge=0.0)
    lr_generator: float = param(2e-5, gt=0.0)
    lr_fake: float = param(2e-5, gt=0.0)
    betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = param(0.0, ge=0.0)
    grad_clip: float = param(10.0, gt=0.0)
    ema_decay: float = param(0.0, ge=0.0, lt=1.0)  # generator EMA (DMD2 keeps one); 0: off
    checkpoint_every: int = param(100, ge=1)
    prompts: str = "shapes"  # training prompt source (PROMPT_SOURCES)
    captions: str | None = None  # prompts: captions - the caption file, one prompt a line
    captions_sha256: str | None = None  # ... and its sha256 (required, and checked, when training starts)
    gan_generator_weight: float = param(0.0, ge=0.0)  # DMD2's GAN term (0: off)
    gan_critic_weight: float = param(0.0, ge=0.0)
    gan_t_max: float = param(0.0, ge=0.0, le=1.0)  # the classifier sees x at t ~ U[0, gan_t_max]
    lr_discriminator: float = param(0.0, ge=0.0)  # learning rate of the classifier head (0: lr_fake)
    reg_weight: float = param(0.0, ge=0.0)  # DMD's regression loss on teacher ODE pairs (0: off)
    reg_pairs: int = param(256, ge=1)  # (noise, teacher image) pairs, made at set-up
    reg_steps: int = param(50, ge=1)  # the teacher's Euler steps per pair
    # -- real models (gdmd.lora, gdmd.train): LoRA students, precision, memory ------------
    generator_lora_rank: int = param(0, ge=0)  # 0: full-weight generator; > 0: a peft LoRA on the teacher
    generator_lora_alpha: float = param(0.0, ge=0.0)  # 0: = rank (DMDR's generator: rank 64, alpha 128)
    fake_lora_rank: int = param(0, ge=0)  # 0: full-weight fake score; > 0: a peft LoRA (DMDR: 32)
    fake_lora_alpha: float = param(0.0, ge=0.0)  # 0: = rank (DMDR)
    lora_targets: tuple[str, ...] = LORA_TARGETS  # DMDR's: both streams' attention projections
    mixed_precision: Literal["no", "bf16"] = "no"  # bf16 autocast around every step (DMDR: bf16)
    gradient_checkpointing: bool = False  # diffusers' activation checkpointing of generator and fake score
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"  # adamw8bit: bitsandbytes' (DMDR --use-8bit-adam)

    @property
    def generator_cost(self) -> float:
        """A generator update's cost relative to DMD's, as measured on the shapes study
        (benchmarks/results/step_time.json; README, "Time"). Not a config key: the DAG orders
        the trainings by it, longest first (workflow/rules/common.smk, `train_priority`)."""
        return 1.0

    @property
    def gan(self) -> bool:
        return self.gan_generator_weight > 0 or self.gan_critic_weight > 0

    def check(self):
        if self.tau_min >= self.tau_max:
            return "tau_min", f"must be below tau_max ({self.tau_max}), got {self.tau_min}"
        for i, b in enumerate(self.betas):
            if not 0.0 <= b < 1.0:
                return f"betas[{i}]", f"must be in [0, 1), got {b}"
        if not self.lora_targets:
            return "lora_targets", "needs at least one module name"
        if self.prompts not in PROMPT_SOURCES:
            return "prompts", f"unknown prompt source {self.prompts!r}; known: {', '.join(PROMPT_SOURCES)}"
        if self.prompts == "captions" and self.captions is None:
            return "captions", "prompts: captions needs captions (a file, one prompt a line) and captions_sha256"
        if self.captions_sha256 is not None and not (
            len(self.captions_sha256) == 64 and set(self.captions_sha256.lower()) <= set("0123456789abcdef")
        ):
            return "captions_sha256", f"must be 64 hex digits, got {self.captions_sha256!r}"
        return None


@dataclass(frozen=True)
class RewardTerm:
    """One training reward: an eval.preference scorer by name, its weight and hinge margin."""

    metric: str
    weight: float = param(1.0, ge=0.0)
    margin: float | None = None  # ReFL hinge relu(margin - R) (dmd_refl, dmdr); unused by NFT/NaPO

    def check(self):
        from eval.preference import REWARDS

        if self.metric not in REWARDS:
            return "metric", f"{self.metric!r} is not a reward; known: {', '.join(REWARDS)}"
        return None


@dataclass(frozen=True)
class RewardedConfig(DMDConfig):
    """DMD plus training rewards (every RL method)."""

    rewards: tuple[RewardTerm, ...] = ()

    def check(self):
        if not self.rewards:
            return "rewards", "an RL method needs at least one reward ({metric, weight[, margin]})"
        return super().check()


@dataclass(frozen=True)
class NFTConfig(RewardedConfig):
    """`dmd_nft`: DMD + DiffusionNFT on the generator's raw samples (the naive baseline)."""

    samples_per_prompt: int = param(4, ge=2)  # G samples per prompt (NFT's group); batch = P x G
    nft_weight: float = param(1.0, ge=0.0)  # lambda
    nft_beta: float = param(1.0, gt=0.0)  # DiffusionNFT's beta (1.0; 0.1 for its multi-reward runs)
    adv_clip_max: float = param(5.0, gt=0.0)  # DiffusionNFT: advantages clipped to +-5
    adv_eps: float = param(1e-4, gt=0.0)  # DiffusionNFT's std epsilon
    adv_std: Literal["group", "global"] = "group"  # DiffusionNFT: global std, per-prompt mean
    nft_t: Literal["generator", "uniform"] = "generator"  # re-noise times: the generator's own, or U(0, 1)

    @property
    def generator_cost(self) -> float:
        return 1.59  # the NFT term's forward and backward at the re-noised samples, and the rewards

    def check(self):
        if self.batch_size % self.samples_per_prompt:
            return "batch_size", f"must be a multiple of samples_per_prompt ({self.samples_per_prompt}), got {self.batch_size}"
        return super().check()


@dataclass(frozen=True)
class ReflConfig(RewardedConfig):
    """`dmd_refl`: DMD + sum_j weight_j relu(margin_j - R_j(decode(x), c)), reward backprop."""

    @property
    def generator_cost(self) -> float:
        return 1.07  # the rewards' backward through decode into the generator

    def check(self):
        for i, r in enumerate(self.rewards):
            if r.margin is None:
                return f"rewards[{i}].margin", "a ReFL hinge needs a margin"
        return super().check()


@dataclass(frozen=True)
class DMDRConfig(ReflConfig):
    """`dmdr`: ReFL terms after a DMD-only cold start, with DynaDG and DynaRS
    (vvvvvjdy/dmdr at 3af9698, train_t2i/sd3/train_sd3_refl_deepspeed.py and utils.py)."""

    cold_start: int = param(0, ge=0)  # iterations of DMD only (DMDR: 2000 generator updates)
    dyn_steps: int = param(1000, ge=1)  # K_dyn, in iterations (DMDR: --dynamic-step 2000 generator updates)
    real_lora_scale: float = param(0.5, ge=0.0)  # DMDR --lora-scale-r: real score's LoRA scale at k = 0
    fake_lora_scale: float = param(2.0, gt=0.0)  # DMDR --lora-scale-f: the fake score's LoRA scale
    real_cfg_jitter: float = param(0.5, ge=0.0)  # real CFG ~ U(real_cfg_scale +- jitter)
    dynars_a: float = param(4.0, gt=0.0)  # DynaRS: tau ~ Beta(a, b) annealed to Beta(1, 1)
    dynars_b: float = param(1.5, gt=0.0)
    dynars_critic: bool = True  # DMDR draws the fake score's training time from the same Beta

    @property
    def generator_cost(self) -> float:
        return 1.09  # dmd_refl's, and the real score's jittered CFG and DynaDG's blend

    def check(self):
        if self.real_cfg_jitter > self.real_cfg_scale:
            return "real_cfg_jitter", f"must not exceed real_cfg_scale ({self.real_cfg_scale}), got {self.real_cfg_jitter}"
        return super().check()


@dataclass(frozen=True)
class GDMDConfig(RewardedConfig):
    """`gdmd`: DMD + DaGC + IGS + NaPO (GDMD, arXiv 2604.19009; inferred keys marked)."""

    group: Literal["t", "fake", "both"] = "t"  # DaGC's target group (the paper's Table 4 ablates these)
    targets: int = param(4, ge=1)  # G re-noise times per sample (group t / both)
    fake_ema_decays: tuple[float, ...] = (0.9, 0.99, 0.999)  # older fake-score snapshots (inferred)
    target_step: float = param(0.05, gt=0.0)  # eta: xhat = sg(x - eta d) (inferred)
    target_norm: bool = True  # d = g / mean|g| (a fixed step along each DMD direction); False: d = g (inferred)
    napo_weight: float = param(1.0, ge=0.0)  # lambda
    weights: Literal["nft", "advantage", "softmax"] = "nft"  # how rewards weight targets (inferred)
    baseline: Literal["group", "raw"] = "group"  # the advantage's baseline (inferred)
    nft_beta: float = param(1.0, gt=0.0)
    adv_clip_max: float = param(5.0, gt=0.0)
    adv_eps: float = param(1e-4, gt=0.0)
    adv_std: Literal["group", "global"] = "group"
    raw_scale: float = param(1.0, gt=0.0)  # baseline raw: A = clip((r(xhat) - r(x)) / raw_scale)
    w_max: float = param(2.0, gt=0.0)  # weights advantage: w = clamp(1 + lambda A, 0, w_max)
    temperature: float = param(1.0, gt=0.0)  # weights softmax: w = G softmax(A / T)

    @property
    def generator_cost(self) -> float:
        # each extra target queries the fake score (0.15) and, with its own re-noise time,
        # the guided teacher too (0.20): group t, G = 4: 2.07; group fake, 4 snapshots: 1.44
        real = 1 if self.group == "fake" else self.targets
        return 1.0 + 0.20 * (real - 1) + 0.15 * (self.group_size - 1)

    @property
    def group_size(self) -> int:
        fakes = 1 + len(self.fake_ema_decays)
        return {"t": self.targets, "fake": fakes, "both": self.targets * fakes}[self.group]

    def check(self):
        for i, d in enumerate(self.fake_ema_decays):
            if not 0.0 < d < 1.0:
                return f"fake_ema_decays[{i}]", f"must be in (0, 1), got {d}"
        if self.group_size < 2:
            return "targets", f"a target group needs at least 2 targets, got {self.group_size} (group {self.group})"
        return super().check()


CONFIGS = {"dmd": DMDConfig, "dmd_nft": NFTConfig, "dmd_refl": ReflConfig, "dmdr": DMDRConfig, "gdmd": GDMDConfig}


def source_options(cfg: DMDConfig) -> dict:
    """Keyword arguments of the run's prompt source beyond (seed, resolution)."""
    if cfg.prompts == "captions":
        return {"path": cfg.captions, "sha256": cfg.captions_sha256}
    return {}
