"""Backbone adapters: one per model family, all with the same surface (DESIGN.md, Backbones).

`BACKBONES` maps the config's `backbone` name to its loader `(teacher, text_encoder,
device, dtype, **options) -> (adapter, frozen teacher network)` and the options it takes
(the study's `backbone_options:`).
"""

from __future__ import annotations

from gdmd.io import UserError

from .flow import Cond, FlowBackbone

OPTIONS = {
    "shapes": (),
    "sd3": ("resolution", "shift", "max_sequence_length", "prompt_cache"),
}
_LOADERS = {"shapes": "gdmd.backbones.shapes:load_teacher", "sd3": "gdmd.backbones.sd3:load_teacher"}


def dtype_of(name: str | None):
    import torch

    return {None: torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def load(name: str, teacher: str, text_encoder: str, device="cpu", dtype=None, options: dict | None = None):
    """The backbone `name`'s adapter and frozen teacher. `options` are the study's
    `backbone_options` (`dtype`: the frozen networks' dtype, fp32 / bf16 / fp16)."""
    import importlib

    if name not in _LOADERS:
        raise UserError(f"unknown backbone {name!r}; known: {', '.join(_LOADERS)}")
    options = dict(options or {})
    option_dtype = options.pop("dtype", None)
    dtype = dtype if dtype is not None else dtype_of(option_dtype)
    for key in options:
        if key not in OPTIONS[name]:
            raise UserError(
                f"backbone_options.{key}: not an option of backbone {name!r} (known: {', '.join(('dtype', *OPTIONS[name]))})"
            )
    module, fn = _LOADERS[name].split(":")
    return getattr(importlib.import_module(module), fn)(teacher, text_encoder, device=device, dtype=dtype, **options)


def __getattr__(name):  # the shapes adapter class without importing diffusers up front
    if name == "ShapesBackbone":
        from .shapes import ShapesBackbone

        return ShapesBackbone
    raise AttributeError(name)


__all__ = ["Cond", "FlowBackbone", "OPTIONS", "load", "dtype_of"]
