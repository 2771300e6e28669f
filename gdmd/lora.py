"""peft LoRA adapters on a diffusers transformer: generators and fake scores that train a
low-rank update of the frozen teacher (DMDR's and DMD2's SDXL recipe).

Every LoRA network of a run is a named adapter on the one frozen teacher (`add_lora`): the
generator, the fake score, the generator's EMA and GDMD's fake-score snapshots share the
teacher's base weights, so an SD3 run holds one transformer plus its adapters (DMDR keeps
its fake and real scores as one network for the same reason). A `LoraNetwork` is called
like the teacher and runs it with its own adapter, and only that one, active; its
`parameters()` and `adapter_state_dict` are that adapter's tensors alone. The teacher
called directly runs with no adapter. Which adapter is active is the shared network's
state, set for the length of each call; gradient checkpointing recomputes a block under
the adapter it first ran with (`enable_checkpointing`), not whichever is active when the
backward pass comes.

The targets default to DMDR's (vvvvvjdy/dmdr at 3af9698, train_t2i/sd3/
train_sd3_refl_deepspeed.py): the attention projections of both streams of every
SD3 joint block. Adapters are created in float32 whatever the base's dtype, and the
Gaussian initialisation (B = 0) makes an adapted network start as the teacher.
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings

import torch

from gdmd.methods.configs import LORA_TARGETS  # torch-free: the configs' default


class LoraNetwork(torch.nn.Module):
    """One named adapter on a shared frozen base network, called like the base.

    The base is not a submodule: `.to()`, `.parameters()`, `.train()` and checkpoints see
    the adapter's tensors only (registered here as `adapter`, the same Parameter objects
    the base's LoRA layers hold)."""

    def __init__(self, base: torch.nn.Module, name: str):
        super().__init__()
        self.__dict__["base"] = base  # shared: not registered as a submodule
        self.name = name
        self.adapter = torch.nn.ParameterList([p for _, p in _adapter_params(base, name)])

    def forward(self, *args, **kwargs):
        with active_adapters(self.base, [self.name]):
            return self.base(*args, **kwargs)

    @property
    def config(self):
        return self.base.config

    def get_submodule(self, target: str) -> torch.nn.Module:
        return self.base.get_submodule(target)

    def enable_gradient_checkpointing(self) -> None:
        enable_checkpointing(self.base)


def _adapter_params(base: torch.nn.Module, name: str):
    """(name in base, Parameter) of adapter `name`'s tensors, in module order."""
    mark = re.compile(rf"\.lora_\w+\.{re.escape(name)}(\.|$)")
    return [(k, p) for k, p in base.named_parameters() if mark.search(k)]


def _layers(base: torch.nn.Module) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in base.modules() if isinstance(m, BaseTunerLayer)]


def _set_active(base: torch.nn.Module, names: list[str]) -> None:
    # peft's own set_adapter also flips requires_grad (the active adapter trainable, the
    # others frozen), which would freeze the generator while the fake score runs: only the
    # active list is set here
    if "_gdmd_lora_layers" not in base.__dict__:
        base.__dict__["_gdmd_lora_layers"] = _layers(base)
    for layer in base.__dict__["_gdmd_lora_layers"]:
        layer._active_adapter = list(names)
    base.__dict__["_gdmd_active"] = list(names)


@contextlib.contextmanager
def active_adapters(base: torch.nn.Module, names: list[str]):
    """`base` with exactly the adapters `names` active inside the block (none: the teacher)."""
    before = base.__dict__.get("_gdmd_active", [])
    _set_active(base, names)
    try:
        yield base
    finally:
        _set_active(base, before)


def add_lora(base: torch.nn.Module, name: str, rank: int, alpha: float, targets=LORA_TARGETS) -> LoraNetwork:
    """A trainable LoRA (rank, alpha, Gaussian init: starts as the base) named `name` on the
    frozen `base`, in float32."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets))
    return _add(base, name, config, trainable=True)


def _add(base: torch.nn.Module, name: str, config, trainable: bool) -> LoraNetwork:
    grads = {p: p.requires_grad for p in base.parameters()}
    base.requires_grad_(False)
    with warnings.catch_warnings():  # peft warns of a second adapter on one model: that is the design here
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        base.add_adapter(config, adapter_name=name)  # (diffusers then calls peft's set_adapter: undone below)
    for p, g in grads.items():
        p.requires_grad_(g)
    base.__dict__.pop("_gdmd_lora_layers", None)  # new LoRA layers where the base had none
    _set_active(base, base.__dict__.get("_gdmd_active", []))
    for _, p in _adapter_params(base, name):
        p.data = p.data.float()
        p.requires_grad_(trainable)
    return LoraNetwork(base, name)


def frozen_copy(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """A frozen copy of a network (EMAs, snapshots): another adapter `name` on the same base
    holding a copy of a LoRA network's adapter, or a deep copy of a full network."""
    if not is_lora(model):
        return copy.deepcopy(model).eval().requires_grad_(False)
    # peft initialises the new adapter from torch's RNG before it is overwritten here: fork
    # the RNG, so that a run draws the same numbers with or without its EMAs and snapshots
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        copy_ = _add(model.base, name, copy.deepcopy(model.base.peft_config[model.name]), trainable=False)
    with torch.no_grad():
        for c, p in zip(copy_.parameters(), model.parameters()):
            c.copy_(p)
    for layer in _layers(model.base):  # at the original's scale (DMDR's fake score runs at 2.0)
        if model.name in layer.scaling:
            layer.scaling[name] = layer.scaling[model.name]
    return copy_.eval()


def enable_checkpointing(base: torch.nn.Module) -> None:
    """diffusers' gradient checkpointing on `base`, each block recomputed under the adapters
    it first ran with (torch.utils.checkpoint's `context_fn`)."""
    from torch.utils.checkpoint import checkpoint

    def checkpointed(block, *args):
        names = list(base.__dict__.get("_gdmd_active", []))

        def contexts():
            return contextlib.nullcontext(), active_adapters(base, names)

        return checkpoint(block.__call__, *args, use_reentrant=False, context_fn=contexts)

    base.enable_gradient_checkpointing(gradient_checkpointing_func=checkpointed)


def is_lora(model: torch.nn.Module) -> bool:
    """Whether the model is an adapter on a shared base (then checkpoints hold the adapter only)."""
    return isinstance(model, LoraNetwork)


def set_lora_scale(model: LoraNetwork, scale: float) -> None:
    """The adapter's scaling in every layer = scale * alpha / r (peft's `set_scale`); the
    other adapters of the base keep theirs."""
    for layer in _layers(model.base):
        if model.name in layer.scaling:
            layer.set_scale(model.name, scale)


@contextlib.contextmanager
def lora_scale(model: LoraNetwork, scale: float):
    """The network with its adapter at `scale` inside the block, as it was after it."""
    layers = [layer for layer in _layers(model.base) if model.name in layer.scaling]
    saved = [layer.scaling[model.name] for layer in layers]
    set_lora_scale(model, scale)
    try:
        yield model
    finally:
        for layer, scaling in zip(layers, saved):
            layer.scaling[model.name] = scaling


def adapter_state_dict(model: LoraNetwork) -> dict:
    """The adapter's tensors, keyed by their place in the base without the adapter's name
    (`transformer_blocks.0.attn.to_q.lora_A.weight`), so a generator's checkpoint loads into
    its EMA's adapter or any other."""
    strip = re.compile(rf"(\.lora_\w+)\.{re.escape(model.name)}(?=\.|$)")
    return {strip.sub(r"\1", k): p.detach() for k, p in _adapter_params(model.base, model.name)}


def load_adapter_state_dict(model: LoraNetwork, state: dict, where: str = "checkpoint") -> None:
    """Load adapter tensors; every adapter tensor must be there, and nothing else."""
    from gdmd.io import UserError

    own = adapter_state_dict(model)
    if set(state) != set(own):
        extra, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
        what = f"unexpected {extra[0]!r}" if extra else f"missing {missing[0]!r}"
        raise UserError(
            f"{where}: LoRA weights do not fit this network ({what}); is the run's LoRA rank or target list the one it trained with?"
        )
    with torch.no_grad():
        for k, p in own.items():
            if p.shape != state[k].shape:
                raise UserError(f"{where}: LoRA weight {k!r} has shape {tuple(state[k].shape)}, this network {tuple(p.shape)}")
            p.copy_(state[k])


def peft_state_dict(model: LoraNetwork) -> dict:
    """The adapter in peft's saved form (what diffusers' `save_lora_weights` takes) and its config."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model.base, adapter_name=model.name), model.base.peft_config[model.name]
