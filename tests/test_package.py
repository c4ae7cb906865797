import neonsign
from support import needs_subprocess, torch_imported_after


@needs_subprocess
def test_import_does_not_import_torch():
    assert not torch_imported_after("import neonsign, neonsign.errors")


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
