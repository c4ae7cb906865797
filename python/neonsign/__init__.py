"""neonsign: traffic-sign recognition (GTSRB) MLOps on Arm CPUs.

The package imports no PyTorch: preprocessing (:mod:`neonsign.data`) and the native inference
engine (:mod:`neonsign.engine`) run on NumPy and the C extension alone. Training and the PyTorch
backends need the ``torch`` extra.
"""

from __future__ import annotations

from . import errors
from ._native import cpu_count, get_threads, set_threads

__version__ = "0.1.0"

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
