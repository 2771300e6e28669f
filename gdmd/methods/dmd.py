"""DMD, DMD2-style: a few-step generator distilled by distribution matching.

Per iteration (DMD2, Yin et al. NeurIPS 2024, Alg. 1; tianweiy/DMD2 main/sd_guidance.py):
- critic step (every iteration): the fake score learns the generator's current output
  distribution by flow matching on sg(x);
- generator step (every `gen_every` iterations, the two time-scale update rule):
  1. backward simulation: k ~ U{0..K-1}; run the generator from noise for k steps without
     grad (x0 = G(x_t), re-noise to the next timestep); then x = G(x_{t_k}, t_k, c) with grad;
  2. tau ~ U[tau_min, tau_max], eps: x_tau = (1 - tau) x + tau eps;
  3. x0_real = the teacher's x0 prediction with CFG (real score), x0_fake = the fake
     score's (no CFG);
  4. g = (x0_fake - x0_real) / mean_CHW |x - x0_real|;
  5. L_DMD = 0.5 mean_CHW (x - sg(x - g))^2 (DMD2's mean reduction).
Generator and fake score start as the teacher: full copies, or LoRA adapters on the
teacher's own frozen weights (gdmd.lora). With `ema_decay` > 0 the state also keeps an
exponential moving average of the generator (DMD2's `ema_decay`), updated after every
generator update; students are then sampled from it.

The RL methods compose these pieces (`dmd_term`, `generator_update`, `critic_step`,
`distribution_matching`): they call `dmd_term` first, so with their RL weight at 0 their
generator update is DMD's, random draws included.

Optional GAN term (DMD2 Sec. 4.3; tianweiy/DMD2 main/sd_guidance.py at 4e54501,
compute_cls_logits and the generator/guidance "cls" losses): a small classifier head on the
fake score's internal features tells real images from generator samples, both clean or, as
DMD2's `diffusion_gan` option, noised to t ~ U[0, gan_t_max]. The critic step adds
`gan_critic_weight` x [softplus(D(fake)) + softplus(-D(real))] to the fake score's loss (head
and fake score both learn); the generator step adds `gan_generator_weight` x softplus(-D(x))
(non-saturating). Real images come with the batch's captions (the shapes world renders the
scenes it drew the captions from). Both weights 0 (the default) is DMD2 without its GAN.
L_DMD is a mean over pixels as DMD2's, so DMD2's GAN weights carry over.

Optional regression loss (DMD, Yin et al. CVPR 2024, Sec. 3.3): at set-up the teacher
solves its ODE (Euler, `reg_steps` steps, CFG `real_cfg_scale`) from `reg_pairs` noises z
for captions of the training distribution; each generator step adds `reg_weight` x
0.5 ||G(z, t=1) - ODE(z)||^2 on a batch of these pairs. It ties each noise to the teacher's
image for it; DMD adds it against mode collapse. In the shapes study (weight 16, 256 pairs of
50 steps, the base recipe) it takes DMD's empty images on single-object prompts from 27% to
8.5% over 3 seeds (benchmarks/README.md, "DMD base: the regression loss").
With a multi-step generator it anchors the first step (from pure noise), the one step that
sees z; DMD's one-step generator is that step alone. DMD measures it with LPIPS; we use the
squared error in model space. The pairs are drawn from the run's seeded RNG, so a resumed
run rebuilds the same pairs. `reg_weight` 0 (the default) is DMD2, which dropped it.
The teacher's ODE solutions are the costly part (about two minutes for 256 pairs on a CPU
core) and depend only on the seed, the teacher and the pair settings, not on the method: the
study makes them once per seed (`python -m gdmd.pairs`, the DAG's `pairs` rule) and every
student with the same settings loads them (`pairs_file`). A run still draws the captions and
noises itself, so its random numbers flow as if it had made the pairs, and checks them
against the file's: a run with or without the file is the same run, bit for bit.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from gdmd.distributed import average_gradients
from gdmd.lora import add_lora, frozen_copy
from gdmd.losses import dmd_gradient, dmd_loss, flow_matching_loss, implicit_target, regression_loss
from gdmd.samplers import euler

from . import Batch
from .configs import DMDConfig

__all__ = ["DMDConfig", "setup", "STEPS", "schedule"]


class DiscriminatorHead(torch.nn.Module):
    """DMD2's classifier on the fake score's features: per-token MLP, logits averaged over
    tokens (one logit per image)."""

    def __init__(self, width: int):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.LayerNorm(width), torch.nn.Linear(width, width), torch.nn.SiLU(), torch.nn.Linear(width, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1).mean(1)


@dataclass(frozen=True)
class RegressionPairs:
    """Teacher ODE pairs: noises (N, C, H, W) at t = 1, the teacher's images (model space)
    from them, and the captions they were drawn for."""

    captions: list[str]
    noise: torch.Tensor
    images: torch.Tensor


PAIRS_FORMAT = "gdmd-regression-pairs/1"


def pairs_settings(cfg: DMDConfig, run) -> dict:
    """What a run's teacher pairs depend on besides its seed (the captions and noises are
    checked as drawn): the file records them and a run that loads it must match."""
    return {
        "backbone": run.backbone,
        "backbone_options": dict(run.backbone_options or {}),
        "teacher": str(run.assets.teacher),
        "text_encoder": str(run.assets.text_encoder),
        "reg_pairs": cfg.reg_pairs,
        "reg_steps": cfg.reg_steps,
        "real_cfg_scale": cfg.real_cfg_scale,
    }


@torch.no_grad()
def teacher_pairs(cfg: DMDConfig, backbone, teacher, prompt_source, chunk: int = 16, made=None) -> RegressionPairs:
    """`cfg.reg_pairs` captions from `prompt_source(seed)` (seed drawn from torch's RNG), a
    noise each, and the teacher's guided Euler solution from it, `chunk` pairs at a time (the
    same bits at any chunk; 16 runs 1.3x faster than 128 on one CPU core, the activations
    stay in cache: benchmarks/README.md). `made`: a `(path, settings)`
    of pairs saved by `save_pairs`, whose images are taken once the captions, noises and
    settings are checked equal (random draws as if made here)."""
    seed = int(torch.randint(2**31 - 1, ()).item())
    captions, _ = prompt_source(seed).batch(cfg.reg_pairs)
    noise = backbone.noise_like(cfg.reg_pairs)
    if made is not None:
        return load_pairs(*made, list(captions), noise)
    images = []
    for i in tqdm(range(0, cfg.reg_pairs, chunk), desc="regression pairs (teacher ODE)", mininterval=5):
        cond = backbone.encode_prompts(captions[i : i + chunk])
        images.append(euler(backbone, teacher, cond, noise[i : i + chunk], cfg.reg_steps, cfg.real_cfg_scale))
    return RegressionPairs(list(captions), noise, torch.cat(images))


def save_pairs(pairs: RegressionPairs, path: Path, settings: dict) -> None:
    """The pairs as safetensors (noise, images) with captions and settings as metadata,
    written to a temporary name and renamed."""
    from safetensors.torch import save

    from gdmd.io import atomic_path

    meta = {"format": PAIRS_FORMAT, "captions": json.dumps(pairs.captions), "settings": json.dumps(settings)}
    tensors = {"noise": pairs.noise.detach().cpu().contiguous(), "images": pairs.images.detach().cpu().contiguous()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".safetensors") as tmp:
        tmp.write_bytes(save(tensors, metadata=meta))  # into the temporary file, keeping its mode


def load_pairs(path: Path, settings: dict, captions: list[str], noise: torch.Tensor) -> RegressionPairs:
    """Pairs saved by `save_pairs`, if made for these settings, captions and noises (else a
    one-line error naming the file and what differs)."""
    from safetensors import SafetensorError, safe_open

    from gdmd.io import UserError

    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            saved = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except (OSError, SafetensorError) as e:
        raise UserError(f"{path}: cannot read the regression pairs ({e})") from None
    if meta.get("format") != PAIRS_FORMAT or set(saved) != {"noise", "images"}:
        raise UserError(f"{path}: not a regression-pairs file (python -m gdmd.pairs writes them)")
    was = json.loads(meta["settings"])
    for key in sorted(set(was) | set(settings)):
        if was.get(key) != settings.get(key):
            raise UserError(f"{path}: made with {key} {was.get(key)!r}, this run has {settings.get(key)!r}; remake it")
    if json.loads(meta["captions"]) != captions or not torch.equal(saved["noise"], noise.cpu()):
        raise UserError(f"{path}: made for another seed or prompt source (its captions or noises differ); remake it")
    return RegressionPairs(captions, noise, saved["images"].to(noise.device, noise.dtype))


@dataclass
class DMDState:
    """Everything the step functions touch. `modules`/`optimizers` are what checkpoints hold."""

    cfg: DMDConfig
    backbone: object
    teacher: torch.nn.Module  # the real score (frozen)
    generator: torch.nn.Module
    fake_score: torch.nn.Module
    opt_generator: torch.optim.Optimizer
    opt_fake: torch.optim.Optimizer
    timesteps: torch.Tensor  # (K,) generator timesteps, from 1 down
    head: torch.nn.Module | None = None  # the GAN classifier (trained with the fake score)
    pairs: RegressionPairs | None = None  # the regression loss's teacher ODE pairs
    generator_ema: torch.nn.Module | None = None  # EMA of the generator (ema_decay > 0)
    prompt_repeats: int = 1  # rows per caption in a batch (see gdmd.methods)

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        mods = {"generator": self.generator, "fake_score": self.fake_score}
        if self.generator_ema is not None:
            mods["generator_ema"] = self.generator_ema
        if self.head is not None:
            mods["discriminator_head"] = self.head
        return mods

    @property
    def needs_real(self) -> bool:
        """Whether the steps want real images with each batch (the GAN term)."""
        return self.head is not None

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_generator": self.opt_generator, "opt_fake": self.opt_fake}


def trainable_copy(teacher: torch.nn.Module) -> torch.nn.Module:
    """A full-weight trainable copy of the teacher, in float32 (the shapes study's generator
    and fake score; a bf16 teacher's copy then trains under `mixed_precision: bf16`)."""
    return copy.deepcopy(teacher).float().train().requires_grad_(True)


def make_generator(cfg: DMDConfig):
    """`teacher -> generator`: a full copy, or a LoRA adapter on the teacher (generator_lora_rank)."""
    if cfg.generator_lora_rank > 0:
        alpha = cfg.generator_lora_alpha or cfg.generator_lora_rank
        return lambda teacher: add_lora(teacher, "generator", cfg.generator_lora_rank, alpha, cfg.lora_targets)
    return trainable_copy


def default_fake(cfg: DMDConfig):
    """`teacher -> fake score`: a full copy, or a LoRA adapter on the teacher (fake_lora_rank)."""
    if cfg.fake_lora_rank > 0:
        alpha = cfg.fake_lora_alpha or cfg.fake_lora_rank
        return lambda teacher: add_lora(teacher, "fake_score", cfg.fake_lora_rank, alpha, cfg.lora_targets)
    return trainable_copy


def trainable(module: torch.nn.Module) -> list:
    return [p for p in module.parameters() if p.requires_grad]


def optimizer(cfg: DMDConfig, groups) -> torch.optim.Optimizer:
    """AdamW, or bitsandbytes' 8-bit AdamW (`optimizer: adamw8bit`, imported only then)."""
    kwargs = {"betas": cfg.betas, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            from gdmd.io import UserError

            raise UserError("train.optimizer: adamw8bit needs bitsandbytes (pip install bitsandbytes)") from None
        return bnb.optim.AdamW8bit(groups, **kwargs)
    # foreach: torch's multi-tensor AdamW, its default on GPUs; on CPU (default there: one
    # tensor at a time) it computes the same bits, faster (tests/unit/test_dmd.py)
    return torch.optim.AdamW(groups, foreach=True, **kwargs)


def setup(
    cfg: DMDConfig, run, backbone, teacher, prompt_source=None, state_class=None, make_fake=None, pairs_file=None, **fields
) -> DMDState:
    """Generator and fake score from the teacher (full copies or LoRAs); the GAN head, the
    regression pairs and the generator EMA if on. `prompt_source(seed)` gives training
    captions (`.batch(n)`); the pairs need it (`pairs_file`: pairs made by `gdmd.pairs` for
    this run's seed, else made here). Other methods pass their state class and its extra
    fields, and `make_fake(teacher)` where their fake score differs (DMDR's LoRA scale)."""
    pairs = None
    if cfg.reg_weight > 0:
        if prompt_source is None:
            raise ValueError("the regression loss needs a prompt source for its teacher pairs")
        made = None if pairs_file is None else (pairs_file, pairs_settings(cfg, run))
        pairs = teacher_pairs(cfg, backbone, teacher.eval(), prompt_source, made=made)
    make_fake = make_fake or default_fake(cfg)
    if cfg.generator_lora_rank > 0 and cfg.fake_lora_rank == 0:  # the full copy first: one made after
        fake_score = make_fake(teacher)  # an adapter joined the teacher would carry it
        generator = make_generator(cfg)(teacher)
    else:
        generator = make_generator(cfg)(teacher)
        fake_score = make_fake(teacher)
    if cfg.gradient_checkpointing:
        for m in (generator, fake_score):
            m.enable_gradient_checkpointing()
    head = None
    critic_groups = [{"params": trainable(fake_score), "lr": cfg.lr_fake}]
    if cfg.gan:
        head = DiscriminatorHead(backbone.feature_width(teacher)).to(backbone.device)
        critic_groups.append({"params": list(head.parameters()), "lr": cfg.lr_discriminator or cfg.lr_fake})
    opt_g = optimizer(cfg, [{"params": trainable(generator), "lr": cfg.lr_generator}])
    opt_f = optimizer(cfg, critic_groups)
    timesteps = backbone.generator_timesteps(run.steps)
    ema = frozen_copy(generator, "generator_ema") if cfg.ema_decay > 0 else None
    cls = state_class or DMDState
    return cls(cfg, backbone, teacher, generator, fake_score, opt_g, opt_f, timesteps, head, pairs, ema, **fields)


def x0_prediction(backbone, model, x_t, t, cond, cfg_scale: float = 1.0) -> torch.Tensor:
    return backbone.x0_from_velocity(x_t, t, backbone.velocity(model, x_t, t, cond, cfg_scale))


def few_step(backbone, generator, cond, noises: list[torch.Tensor], timesteps: torch.Tensor, grad_from: int | None = None):
    """DMD2's multi-step generator: x0 = G(x_t); re-noise to the next timestep with the next noise.

    noises[0] is the start (t = 1), noises[k] re-noises step k's x0 to timesteps[k]. Runs
    all K steps, or stops after step `grad_from` (backward simulation) with gradient only
    through that last step. Returns the final x0 prediction.
    """
    n = noises[0].shape[0]
    x = noises[0]
    last = len(timesteps) - 1 if grad_from is None else grad_from
    for k in range(last + 1):
        t = timesteps[k].expand(n).to(x.device)
        with torch.set_grad_enabled(grad_from is not None and k == last and torch.is_grad_enabled()):
            x0 = x0_prediction(backbone, generator, x, t, cond)
        if k < last:
            x = backbone.add_noise(x0.detach(), timesteps[k + 1].expand(n).to(x.device), noises[k + 1])
    return x0


def simulate(state: DMDState, cond, with_grad: bool) -> torch.Tensor:
    """Backward simulation (step 1): k ~ U{0..K-1}, k steps without grad, then G at t_k."""
    K = len(state.timesteps)
    n = len(cond)
    k = int(torch.randint(K, ()).item())
    noises = [state.backbone.noise_like(n) for _ in range(k + 1)]
    with torch.set_grad_enabled(with_grad):
        return few_step(state.backbone, state.generator, cond, noises, state.timesteps, grad_from=k)


def renoise_times(cfg: DMDConfig, n: int, device) -> torch.Tensor:
    """DMD2's re-noise times tau ~ U[tau_min, tau_max], (n,)."""
    return cfg.tau_min + (cfg.tau_max - cfg.tau_min) * torch.rand(n, device=device)


def teacher_x0(state: DMDState, x_tau, tau, cond) -> torch.Tensor:
    """The real score's x0 prediction: the teacher with CFG `real_cfg_scale`."""
    return x0_prediction(state.backbone, state.teacher, x_tau, tau, cond, state.cfg.real_cfg_scale)


@dataclass
class Query:
    """One distribution-matching query (steps 2-4) of samples x: the re-noise times and
    noisy inputs, both scores' x0 predictions, and g with its count of non-finite values."""

    tau: torch.Tensor  # (B,)
    x_tau: torch.Tensor
    x0_real: torch.Tensor
    x0_fake: torch.Tensor
    g: torch.Tensor
    nonfinite: int


def distribution_matching(state: DMDState, x: torch.Tensor, cond, tau=None, real_x0=None, fake_score=None) -> Query:
    """Steps 2-4: re-noise x at tau (drawn if not given), query the real score (`real_x0`,
    default the guided teacher) and the fake score (default the current one)."""
    bb = state.backbone
    if tau is None:
        tau = renoise_times(state.cfg, x.shape[0], x.device)
    x_tau = bb.add_noise(x.detach(), tau, torch.randn_like(x))
    with torch.no_grad():
        x0_real = (real_x0 or teacher_x0)(state, x_tau, tau, cond)
        x0_fake = x0_prediction(bb, fake_score or state.fake_score, x_tau, tau, cond)
    g, nonfinite = dmd_gradient(x, x0_real, x0_fake)
    return Query(tau, x_tau, x0_real, x0_fake, g, nonfinite)


@dataclass
class Term:
    """DMD's generator term: the sample x (with the generator's gradient), L_DMD, its metrics
    and the query it came from."""

    x: torch.Tensor
    loss: torch.Tensor
    metrics: dict
    query: Query


def dmd_term(state: DMDState, batch: Batch, tau=None, real_x0=None) -> Term:
    """Steps 1-5 on the batch. DMD's own extra terms (GAN, regression) are added by
    `generator_extras`."""
    x = simulate(state, batch.cond, with_grad=True)
    q = distribution_matching(state, x, batch.cond, tau, real_x0)
    loss, m = dmd_loss(x, implicit_target(x, q.g))
    return Term(x, loss, {**m, "g_abs": q.g.abs().mean().item(), "nonfinite": q.nonfinite}, q)


def _update(params, opt, loss, clip) -> float:
    """One optimiser step on `loss`: backward, gradients averaged over data-parallel
    processes (a no-op on one), clipped, stepped. Returns the norm before clipping."""
    params = list(params)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(params)
    gn = torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return float(gn)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay ema + (1 - decay) model, parameter by parameter (buffers copied)."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def generator_update(state: DMDState, loss, metrics: dict) -> dict:
    """Step the generator on `loss` (clipped), then its EMA; return the metrics with the
    generator's gradient norm (before clipping)."""
    gn = _update(trainable(state.generator), state.opt_generator, loss, state.cfg.grad_clip)
    if state.generator_ema is not None:
        ema_update(state.generator_ema, state.generator, state.cfg.ema_decay)
    return {**metrics, "grad_norm_generator": gn}


def discriminate(state: DMDState, x, cond) -> torch.Tensor:
    """The GAN classifier's logits (B,) for images x (model space): x noised to
    t ~ U[0, gan_t_max] (clean when 0), the fake score's features, the head."""
    bb = state.backbone
    t = state.cfg.gan_t_max * torch.rand(x.shape[0], device=x.device)
    _, feats = bb.velocity_and_features(state.fake_score, bb.add_noise(x, t, torch.randn_like(x)), t, cond)
    return state.head(feats)


def generator_extras(state: DMDState, x, batch: Batch, loss, metrics: dict):
    """DMD's optional generator terms on x: the GAN term and the regression loss."""
    cfg = state.cfg
    if cfg.gan_generator_weight > 0:
        gan = F.softplus(-discriminate(state, x, batch.cond)).mean()
        loss = loss + cfg.gan_generator_weight * gan
        metrics = {**metrics, "gan_generator_loss": gan.item()}
    if state.pairs is not None:
        reg, m_reg = regression(state)
        loss = loss + cfg.reg_weight * reg
        metrics = {**metrics, **m_reg}
    return loss, metrics


def generator_step(state: DMDState, batch: Batch) -> dict:
    """DMD generator update (steps 1-5, plus the GAN and regression terms if on)."""
    term = dmd_term(state, batch)
    loss, m = generator_extras(state, term.x, batch, term.loss, term.metrics)
    return generator_update(state, loss, m)


def regression(state: DMDState):
    """The regression loss on `batch_size` pairs drawn with replacement: the generator's
    first step (t = timesteps[0] = 1) from each pair's noise against the teacher's image."""
    pairs, bb = state.pairs, state.backbone
    idx = torch.randint(len(pairs.noise), (state.cfg.batch_size,))
    cond = bb.encode_prompts([pairs.captions[i] for i in idx.tolist()])
    z = pairs.noise[idx]
    x = x0_prediction(bb, state.generator, z, state.timesteps[0].expand(len(idx)).to(z.device), cond)
    return regression_loss(x, pairs.images[idx])


def critic_step(state: DMDState, batch: Batch, t=None) -> dict:
    """Fake-score update: flow matching on the generator's (detached) samples at t ~ U[0, 1]
    (or the given t); with the GAN term, the classifier also learns real (`batch.real`,
    model space) from generated."""
    cfg, bb = state.cfg, state.backbone
    cond, real = batch.cond, batch.real
    with torch.no_grad():
        x = simulate(state, cond, with_grad=False)
    n = x.shape[0]
    if t is None:
        t = torch.rand(n, device=x.device)
    noise = torch.randn_like(x)
    v = bb.raw_velocity(state.fake_score, bb.add_noise(x, t, noise), t, cond)
    loss, m = flow_matching_loss(v, x, noise)
    out = {}
    if state.head is not None:
        if real is None:
            raise ValueError("the GAN term needs real images with the batch")
        logit_fake, logit_real = discriminate(state, x, cond), discriminate(state, real, cond)
        gan = F.softplus(logit_fake).mean() + F.softplus(-logit_real).mean()
        loss = loss + cfg.gan_critic_weight * gan
        out = {"gan_critic_loss": gan.item(), "d_real_acc": (logit_real > 0).float().mean().item(),
               "d_fake_acc": (logit_fake < 0).float().mean().item()}  # fmt: skip
    params = [p for group in state.opt_fake.param_groups for p in group["params"]]
    gn = _update(params, state.opt_fake, loss, cfg.grad_clip)
    return {"fake_loss": m["fm_loss"], **out, "grad_norm_fake": gn}


def schedule(cfg: DMDConfig, iteration: int) -> tuple[str, ...]:
    """The two time-scale rule: a critic update every iteration, a generator update every
    gen_every (first, as DMD2's loop does its generator turn before its guidance turn)."""
    return ("generator", "critic") if iteration % cfg.gen_every == 0 else ("critic",)


STEPS = {"critic": critic_step, "generator": generator_step}


def load_generator(run, backbone, teacher, checkpoint_path):
    """A trained few-step generator (its EMA where the run kept one) and its sampler
    `(cond, noises) -> x0`. Every student method trains DMD's generator."""
    from gdmd import checkpoint
    from gdmd.io import UserError

    if checkpoint_path is None:
        raise UserError(f"run {run.run!r} ({run.method}) samples from a trained generator: pass --checkpoint")
    from gdmd import config as cfglib

    from . import get_method

    cfg = cfglib.from_dict(get_method(run.method).Config, run.train, "train")
    generator = make_generator(cfg)(teacher)
    name = "generator_ema" if checkpoint.has_module(checkpoint_path, "generator_ema") else "generator"
    checkpoint.load_module_weights(checkpoint_path, name, generator)
    # sampled without autocast: in the backbone's dtype (a no-op for the float32 shapes study)
    generator.to(dtype=backbone.dtype).eval().requires_grad_(False)
    timesteps = backbone.generator_timesteps(run.steps)

    @torch.no_grad()
    def sample(cond, noises):
        return few_step(backbone, generator, cond, noises, timesteps)

    return generator, sample
