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


def test_the_stub_ships_with_the_package():
    """_native.pyi (the extension's types) and py.typed are installed with the package (wheel and
    editable install alike: meson's install_subdir copies python/neonsign)."""
    from pathlib import Path

    package = Path(neonsign.__file__).parent
    assert (package / "_native.pyi").is_file()
    assert (package / "py.typed").is_file()
