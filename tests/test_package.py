import subprocess
import sys

import neonsign
from support import needs_subprocess


@needs_subprocess
def test_import_does_not_import_torch():
    code = "import sys, neonsign, neonsign.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_thread_pool_resize_roundtrip():
    before = neonsign.get_threads()
    try:
        assert neonsign.set_threads(1) == 1
        assert neonsign.get_threads() == 1
        assert neonsign.set_threads(3) == 3
    finally:
        neonsign.set_threads(before)


def test_set_threads_rejects_negative():
    import pytest

    with pytest.raises(ValueError):
        neonsign.set_threads(-1)
