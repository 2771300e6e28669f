"""gdmd/allocator.py: when the malloc settings apply (they are process-wide, so each case
runs in its own interpreter). That they change no bit: tests/integration/test_numerics.py."""

import os
import platform
import subprocess
import sys

import pytest

from ..conftest import ROOT

CODE = "import gdmd, gdmd.allocator as a; print(a.tune())"


def _tune(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GDMD_MALLOC", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    clean = {**clean, "PYTHONPATH": str(ROOT), **env}
    r = subprocess.run([sys.executable, "-c", CODE], env=clean, capture_output=True, text=True, check=True)
    return r.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's settings are glibc's")
def test_importing_gdmd_tunes_glibc_malloc():
    assert _tune() == "tuned"


def test_the_user_can_keep_the_default_malloc():
    assert _tune(GDMD_MALLOC="default") == "default (GDMD_MALLOC=default)"
    assert _tune(MALLOC_TRIM_THRESHOLD_="131072") == "default (glibc malloc variables set by the user)"
    assert _tune(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536") == "default (glibc malloc variables set by the user)"
