"""neonsign: traffic-sign recognition (GTSRB) MLOps on Arm CPUs.

The package imports no PyTorch: preprocessing (:mod:`neonsign.data`) and the native inference
engine (:mod:`neonsign.engine`) run on NumPy and the C extension alone. Training and the PyTorch
backends need the ``torch`` extra.

The version is written once, in meson.build; the extension carries it (``_native.__version__``)
and so does the package metadata. The shared thread pool is sized by ``NEONSIGN_THREADS`` (read
when the pool is first used; a bad value raises :class:`~neonsign.errors.ConfigError` there, not
at import) and the engine's default kernel by ``NEONSIGN_KERNEL`` (read when a kernel is chosen
without a name): the library's two documented environment reads, both in the C core.
"""

from __future__ import annotations

from . import errors
from ._native import __version__, cpu_count, get_threads, set_threads

__all__ = ["__version__", "errors", "cpu_count", "get_threads", "set_threads", "profile"]

# Re-exported lazily, so that `import neonsign` imports neither these modules nor torch.
_LAZY = {"profile": ("neonsign.profiler", "profile")}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neonsign' has no attribute '{name}'")
