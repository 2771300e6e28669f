"""Checkpoints: tensors in one safetensors file, everything else in one JSON file.

A checkpoint is a directory `<name>/` with
- `tensors.safetensors`: module weights (`<module>.<param>`; of a LoRA'd network only its
  adapters, since the frozen base is the teacher, gdmd.lora), optimiser tensors
  (`<opt>.state.<index>.<key>`) and RNG byte states (`rng.<name>`);
- `state.json`: step, optimiser hyper-parameters and scalar state, numpy RNG states,
  resolved config, package versions and anything else the caller adds.
It is written to a temporary directory, synced, read back (`problem`), and only then renamed
into place, so a crash (or SIGKILL), a full disk or a quota never leaves a half-written
checkpoint under its final name; with `previous`, the checkpoint it replaces is kept there
until the next one is complete. A failed write raises `WriteError` and changes nothing.
Loading never unpickles.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import lora
from .io import UserError, atomic_dir, provenance

TENSORS = "tensors.safetensors"
STATE = "state.json"


class WriteError(UserError):
    """A checkpoint could not be written (disk full, quota, I/O error); nothing was replaced."""


def _flatten_optimizer(name: str, opt_state: dict, tensors: dict) -> dict:
    """Move the tensors of an optimiser state_dict into `tensors`; return the JSON remainder.
    A state entry that is a dict of tensors (bitsandbytes' 8-bit states keep their quantised
    buffers under one key) is flattened one level: `<opt>.state.<index>.<key>.<subkey>`."""
    scalars = {}
    for idx, st in opt_state["state"].items():
        scalars[str(idx)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{name}.state.{idx}.{k}"] = v.detach().contiguous().cpu()
            elif isinstance(v, dict) and v and all(torch.is_tensor(x) for x in v.values()):
                for sub, x in v.items():
                    tensors[f"{name}.state.{idx}.{k}.{sub}"] = x.detach().contiguous().cpu()
            else:
                scalars[str(idx)][k] = v
    return {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(name: str, meta: dict, tensors: dict) -> dict:
    state: dict = {}
    prefix = f"{name}.state."
    for key, v in tensors.items():
        if key.startswith(prefix):
            idx, k = key[len(prefix) :].split(".", 1)
            k, _, sub = k.partition(".")
            entry = state.setdefault(int(idx), {})
            if sub:
                entry.setdefault(k, {})[sub] = v
            else:
                entry[k] = v
    for idx, sc in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(sc)
    return {"state": state, "param_groups": meta["param_groups"]}


def _module_state(m: torch.nn.Module) -> dict:
    return lora.adapter_state_dict(m) if lora.is_lora(m) else m.state_dict()


def rng_snapshot(numpy_rngs: dict[str, np.random.Generator] | None = None) -> tuple[dict, dict]:
    """(tensors, json) capturing torch's CPU (and CUDA) RNG and the given numpy Generators."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{i}"] = s
    js = {k: g.bit_generator.state for k, g in (numpy_rngs or {}).items()}
    return tensors, js


def rng_restore(tensors: dict, js: dict, numpy_rngs: dict[str, np.random.Generator] | None = None) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda"))]
        if states:
            torch.cuda.set_rng_state_all(states)
    for k, g in (numpy_rngs or {}).items():
        g.bit_generator.state = js[k]


def save(
    path: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    state: dict | None = None,
    numpy_rngs: dict[str, np.random.Generator] | None = None,
    extra_files: dict[str, Path] | None = None,
    previous: str | Path | None = None,
) -> None:
    """Write a checkpoint directory (see module docstring); `extra_files` (name -> source
    path) are copied into it, inside the same rename. With `previous`, a checkpoint already
    at `path` moves there once the new one is complete (the one there before is deleted)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, v in _module_state(m).items():
            tensors[f"{name}.{k}"] = v.detach().contiguous().cpu()
    opt_meta = {name: _flatten_optimizer(name, o.state_dict(), tensors) for name, o in (optimizers or {}).items()}
    rng_t, rng_js = rng_snapshot(numpy_rngs)
    tensors.update(rng_t)
    storages = set()  # safetensors refuses tensors that share memory (bitsandbytes' 8-bit states share their qmaps)
    for k, v in tensors.items():
        if v.untyped_storage().data_ptr() in storages:
            tensors[k] = v.clone()
        storages.add(tensors[k].untyped_storage().data_ptr())
    meta = {"optimizers": opt_meta, "numpy_rngs": rng_js, **provenance(), **(state or {})}
    try:
        with atomic_dir(path, previous=previous) as tmp:
            save_file(tensors, tmp / TENSORS)
            (tmp / STATE).write_text(json.dumps(meta, indent=1))
            for name, src in (extra_files or {}).items():
                shutil.copyfile(src, tmp / name)
            for f in tmp.iterdir():  # on disk before the rename makes it the checkpoint
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
            bad = problem(tmp)
            if bad:
                raise WriteError(f"{path}: the checkpoint read back wrong ({bad})")
    except (OSError, SafetensorError) as e:
        if isinstance(e, OSError) and e.strerror:
            reason = e.strerror
        else:  # safetensors' own: "Error while serializing: I/O error: No space left on device (os error 28)"
            reason = re.sub(r"^(Error while serializing: )?(I/O error: )?|\s*\(os error \d+\)$", "", str(e))
        raise WriteError(f"{path}: cannot write the checkpoint ({reason})") from None


def problem(path: str | Path) -> str | None:
    """Why the checkpoint directory `path` cannot be loaded (a file missing, a safetensors
    file truncated or malformed, a state.json that is not JSON), or None."""
    path = Path(path)
    for name in (TENSORS, STATE):
        if not (path / name).is_file():
            return f"no {name}"
    try:
        with safe_open(str(path / TENSORS), "pt"):  # checks the header and the file's length
            pass
        json.loads((path / STATE).read_text())
    except SafetensorError as e:
        return f"{TENSORS}: {str(e).removeprefix('Error while deserializing header: ')}"
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"{STATE}: {e}"
    return None


def load(
    path: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    numpy_rngs: dict[str, np.random.Generator] | None = None,
    restore_rng: bool = True,
) -> dict:
    """Load a checkpoint into modules/optimisers (and RNGs); return its JSON state."""
    path = Path(path)
    if not (path / TENSORS).is_file() or not (path / STATE).is_file():
        raise UserError(f"{path}: not a checkpoint (missing {TENSORS} or {STATE})")
    tensors = load_file(path / TENSORS)
    meta = json.loads((path / STATE).read_text())
    for name, m in modules.items():
        prefix = f"{name}."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if lora.is_lora(m):
            lora.load_adapter_state_dict(m, sd, f"{path} ({name})")
        else:
            m.load_state_dict(sd)
    for name, o in (optimizers or {}).items():
        o.load_state_dict(_unflatten_optimizer(name, meta["optimizers"][name], tensors))
    if restore_rng:
        rng_restore(tensors, meta.get("numpy_rngs", {}), numpy_rngs)
    return meta


def has_module(path: str | Path, name: str) -> bool:
    """Whether checkpoint `path` holds weights of module `name`."""
    from safetensors import safe_open

    with safe_open(Path(path) / TENSORS, "pt") as f:
        return any(k.startswith(f"{name}.") for k in f.keys())


def load_module_weights(path: str | Path, name: str, module: torch.nn.Module) -> dict:
    """Load only module `name`'s weights from a checkpoint (e.g. a trained generator)."""
    return load(path, {name: module}, restore_rng=False)
