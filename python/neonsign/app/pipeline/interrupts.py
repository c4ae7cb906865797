"""Ctrl-C that cannot be lost: a SIGINT handler that remembers the interrupt.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be. When
that is inside a finalizer or a weakref callback (SQLAlchemy and MLflow run many while MLflow
creates its store), the interpreter prints ``Exception ignored in ...: KeyboardInterrupt`` and
carries on, and a pipeline interrupted in its first seconds went on to register and promote.

:func:`trap` installs a handler that records the interrupt before raising it, and
:func:`check` raises it again at the next checkpoint (the runner calls it before and after every
stage, the register stage before it promotes) if it was swallowed. Without :func:`trap` (a
library caller, a non-main thread) :func:`check` is a no-op.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["check", "pending", "trap"]

_pending = threading.Event()


def _handler(signum: int, frame: FrameType | None) -> None:
    _pending.set()
    raise KeyboardInterrupt


def pending() -> bool:
    """True when an interrupt arrived under :func:`trap` (whether or not it was swallowed)."""
    return _pending.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if an interrupt arrived under :func:`trap`: a checkpoint."""
    if _pending.is_set():
        raise KeyboardInterrupt


@contextmanager
def trap() -> Iterator[None]:
    """Record every SIGINT of the block (see the module doc); the previous handler is restored
    and the record cleared on exit (call :func:`check` inside the block to act on it). In a thread other than the main one (where no handler can be installed), or when
    SIGINT is ignored (a background job of a non-interactive shell, ``nohup``), the block runs
    unchanged."""
    _pending.clear()
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _pending.clear()  # handled by now (raised, or reported by the caller's last check)
