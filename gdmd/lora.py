"""peft LoRA adapters on a diffusers transformer: generators and fake scores that train a
low-rank update of the frozen teacher (DMDR's and DMD2's SDXL recipe).

The targets default to DMDR's (vvvvvjdy/dmdr at 3af9698, train_t2i/sd3/
train_sd3_refl_deepspeed.py): the attention projections of both streams of every
SD3 joint block. Adapters are created in float32 whatever the base's dtype, and the
Gaussian initialisation (B = 0) makes an adapted network start as the teacher.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from gdmd.methods.configs import LORA_TARGETS  # torch-free: the configs' default


def with_lora(teacher: torch.nn.Module, rank: int, alpha: float, targets=LORA_TARGETS) -> torch.nn.Module:
    """A copy of the teacher, frozen, with a trainable LoRA (rank, alpha) on `targets`."""
    from peft import LoraConfig

    model = copy.deepcopy(teacher).requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets))
    model.add_adapter(config)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
            p.requires_grad_(True)
    return model.train()


def is_lora(model: torch.nn.Module) -> bool:
    """Whether the model carries peft adapters (then checkpoints hold the adapters only)."""
    return bool(getattr(model, "peft_config", None))


def lora_layers(model: torch.nn.Module) -> list:
    if not is_lora(model):  # (peft is a cluster extra: the shapes study runs without it)
        return []
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def set_lora_scale(model: torch.nn.Module, scale: float) -> None:
    """Every LoRA layer's scaling = scale * alpha / r (peft's `set_scale`)."""
    for layer in lora_layers(model):
        for adapter in layer.scaling:
            layer.set_scale(adapter, scale)


@contextlib.contextmanager
def lora_scale(model: torch.nn.Module, scale: float):
    """The model with its LoRA layers at `scale` inside the block, as they were after it."""
    layers = lora_layers(model)
    saved = [dict(layer.scaling) for layer in layers]
    set_lora_scale(model, scale)
    try:
        yield model
    finally:
        for layer, scaling in zip(layers, saved):
            layer.scaling.update(scaling)


def adapter_state_dict(model: torch.nn.Module) -> dict:
    """The adapters' tensors of a LoRA'd network (its state_dict without the frozen base)."""
    return {k: v for k, v in model.state_dict().items() if "lora_" in k}


def load_adapter_state_dict(model: torch.nn.Module, state: dict, where: str = "checkpoint") -> None:
    """Load adapter tensors; every adapter tensor must be there, and nothing else."""
    from gdmd.io import UserError

    expected = set(adapter_state_dict(model))
    if set(state) != expected:
        extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
        what = f"unexpected {extra[0]!r}" if extra else f"missing {missing[0]!r}"
        raise UserError(
            f"{where}: LoRA weights do not fit this network ({what}); is the run's LoRA rank or target list the one it trained with?"
        )
    model.load_state_dict(state, strict=False)
