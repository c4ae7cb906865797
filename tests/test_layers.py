"""The package's layers, checked from the source: the library never imports the application
layer or the command line, holds no argparse code, and reads only documented environment
variables; only the serving config reads NEONSIGN_* serving settings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "python" / "neonsign"

#: The library: every top-level module but the ``python -m neonsign`` entry point.
LIBRARY = sorted(p for p in PKG.glob("*.py") if p.name != "__main__.py")

#: Environment variables the library may read, and why (documented in the modules' docstrings).
LIBRARY_ENV = {
    "train.py": {"WORLD_SIZE"},  # torchrun's process-group size
    "profile_report.py": {"GITHUB_STEP_SUMMARY"},  # GitHub Actions' job summary file
    # the measured training precision's cache (docs/training.md)
    "_precision.py": {"NEONSIGN_CACHE_DIR", "XDG_CACHE_HOME"},
    # libgomp's wait policy for libtorch's idle threads (docs/profiler.md)
    "backends.py": {"OMP_WAIT_POLICY"},
}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":``: a script entry point (``torchrun -m neonsign.train``)
    that may start the command line; it is not part of the importable library."""
    return isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved), outside
    its ``__main__`` guard."""
    package = (
        "neonsign"
        if path.parent == PKG
        else "neonsign." + ".".join(path.parent.relative_to(PKG).parts)
    )
    names: set[str] = set()
    tree = _tree(path)
    tree.body = [node for node in tree.body if not _is_main_guard(node)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _env_reads(path: Path) -> set[str]:
    """String constants used as keys of os.environ / os.getenv in ``path``."""
    found: set[str] = set()
    for node in ast.walk(_tree(path)):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = ast.unparse(node.func.value)
            if (target == "os.environ" and node.func.attr == "get") or (
                target == "os" and node.func.attr == "getenv"
            ):
                key = node.args[0] if node.args else None
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        if key is not None:
            found.add(key.value if isinstance(key, ast.Constant) else ast.unparse(key))
    return found


def test_library_modules_found() -> None:
    names = {p.name for p in LIBRARY}
    assert {"engine.py", "data.py", "preprocess.py", "errors.py", "train.py"} <= names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_library_does_not_import_app_or_cli(path: Path) -> None:
    bad = sorted(
        n for n in _imports(path) if n.startswith(("neonsign.app", "neonsign.cli", "argparse"))
    )
    assert not bad, f"{path.name} (library) imports {bad}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_library_environment_reads_are_documented(path: Path) -> None:
    extra = _env_reads(path) - LIBRARY_ENV.get(path.name, set())
    assert not extra, f"{path.name} reads undocumented environment variables {sorted(extra)}"


SERVE_SETTINGS = (
    "MODEL",
    "HOST",
    "PORT",
    "WORKERS",
    "THREADS",
    "ENGINE_THREADS",
    "KERNEL",
    "MAX_UPLOAD_BYTES",
    "MAX_PIXELS",
    "MAX_BATCH",
    "ADMIN_TOKEN",
    "LOG_LEVEL",
    "LIMIT_CONCURRENCY",
    "RELOAD_TIMEOUT",
)


def test_only_serving_config_reads_serve_settings() -> None:
    """``app/serving/config.py`` is the one reader of the NEONSIGN_* serving settings (the C
    extension's documented NEONSIGN_THREADS / NEONSIGN_KERNEL are read in C, not here)."""
    names = {"NEONSIGN_" + n for n in SERVE_SETTINGS}
    readers = {
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if p.name != "config.py" and _env_reads(p) & names
    }
    assert not readers, readers
    config = PKG / "app" / "serving" / "config.py"
    assert "ENV_PREFIX" in config.read_text(encoding="utf-8")


def test_class_names_cover_the_engine_classes() -> None:
    from neonsign import _native
    from neonsign.data import CLASS_NAMES, NUM_CLASSES

    assert NUM_CLASSES == _native.NUM_CLASSES == len(CLASS_NAMES)
