"""Helpers shared by the tests (importable as ``support``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os

import pytest

#: Set by tools/arm/test.sh when the suite runs as AArch64 under qemu-user. There, child
#: processes of the emulated Python cannot be started (no binfmt_misc) and timing means nothing.
EMULATED = os.environ.get("NEONSIGN_EMULATED", "")

needs_subprocess = pytest.mark.skipif(
    bool(EMULATED), reason=f"cannot start child processes under {EMULATED} user-mode emulation"
)


def torch_imported_after(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter leaves torch in ``sys.modules``."""
    import subprocess
    import sys

    script = f"import sys; {code}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"
