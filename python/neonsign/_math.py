"""Numeric helpers shared by the engine and the application layer (NumPy only)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["softmax"]


def softmax(logits: NDArray[np.floating]) -> NDArray[np.float32]:
    """Row-wise softmax of ``(N, C)`` logits in float32.

    The largest logit of each row is subtracted first, so ``exp`` never overflows and the
    top-1 probability is exactly ``1 / sum(exp(z))``: :meth:`neonsign.engine.Engine.classify`
    and the server report the same value to the last bit.
    """
    z = logits - logits.max(axis=1, keepdims=True)
    e: NDArray[np.float32] = np.exp(z, dtype=np.float32)
    probs: NDArray[np.float32] = e / e.sum(axis=1, keepdims=True)
    return probs
