"""Small I/O helpers shared by every entry point: atomic writes, provenance, errors.

Every file a DAG rule declares as output is written under a temporary name in the same
directory and renamed into place, so an interrupted job never leaves a file that looks
complete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from . import allocator, numerics


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits non-zero, no traceback."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_near(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temporary path next to `path`; on success rename it onto `path`.

    `suffix` is appended before `.tmp` for writers that care about the file extension.
    """
    path = Path(path)
    try:
        tmp = _tmp_near(path, suffix)
    except OSError as e:
        raise UserError(f"{path}: cannot write output ({e.strerror})") from e
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path, previous: str | Path | None = None):
    """Yield a temporary directory next to `path`; on success it replaces `path` whole. With
    `previous`, an existing `path` is moved there first (replacing what was there)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as e:
        raise UserError(f"{path}: cannot write output ({e.strerror})") from e
    try:
        yield tmp
        if path.exists() and previous is not None:
            if Path(previous).exists():
                shutil.rmtree(previous)
            os.replace(path, previous)
        elif path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


PACKAGES = ("torch", "diffusers", "open_clip_torch", "numpy", "safetensors", "transformers", "peft")


def command_line() -> str:
    """This process's command line as typed: `python -m pkg.mod args` for a module run."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    argv0 = sys.argv[0] if sys.argv else ""
    if spec is not None and spec.name:
        argv0 = "-m " + spec.name.removesuffix(".__main__")
    return " ".join([Path(sys.executable).name, argv0, *sys.argv[1:]])


def provenance(**extra) -> dict:
    """Package versions, Python, platform and the command line: saved next to every output."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    try:
        versions["gdmd-bench"] = metadata.version("gdmd-bench")
    except metadata.PackageNotFoundError:
        pass
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": command_line(),
        # which accelerator a scheduler gave this process (SLURM sets it for --gpus)
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        # CPU numerics mode, CPU model and torch's kernel choice (see gdmd/numerics.py)
        "numerics": numerics.describe(),
        # glibc malloc settings (gdmd/allocator.py): speed only, never the bits
        "malloc": allocator.tune(),
        **extra,
    }


class CliParser(argparse.ArgumentParser):
    """argparse with a one-line error (`error: ...`, exit 2) instead of usage + message."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")


def run_cli(main):
    """Run `main()`; turn UserError into a one-line message on stderr and exit code 2."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
