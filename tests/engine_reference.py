"""Float64 NumPy reference of TrafficSignNet (no PyTorch), for the engine tests.

Used where PyTorch is missing (the AArch64 run under qemu) and as a second opinion elsewhere.
Vectorised: convolution by summing the 9 shifted views, so it stays fast under emulation.
"""

from __future__ import annotations

import numpy as np

from neonsign.engine import WEIGHT_SHAPES


def conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid 3x3 conv: x (N,Cin,H,W), w (Cout,Cin,3,3), b (Cout,) -> (N,Cout,H-2,W-2) float64."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    n, _, h, wd = x.shape
    out = np.zeros((n, w.shape[0], h - 2, wd - 2))
    for ky in range(3):
        for kx in range(3):
            patch = x[:, :, ky : ky + h - 2, kx : kx + wd - 2]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx], optimize=True)
    return out + b.astype(np.float64)[None, :, None, None]


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def maxpool2x2(x: np.ndarray) -> np.ndarray:
    """2x2 max pool, stride 2, floor: (N,C,H,W) -> (N,C,H//2,W//2)."""
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ w.astype(np.float64).T + b.astype(np.float64)


def forward(sd: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits (N,43) float64 of TrafficSignNet with weights sd on x (N,3,32,32)."""
    h = maxpool2x2(relu(conv3x3(x, sd["conv1.weight"], sd["conv1.bias"])))
    h = maxpool2x2(relu(conv3x3(h, sd["conv2.weight"], sd["conv2.bias"])))
    h = h.reshape(h.shape[0], -1)
    h = relu(linear(h, sd["fc1.weight"], sd["fc1.bias"]))
    return linear(h, sd["fc2.weight"], sd["fc2.bias"])


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """Weights drawn like PyTorch's default init (uniform +-1/sqrt(fan_in)), float32."""
    rng = np.random.default_rng(seed)
    sd = {}
    for name, shape in WEIGHT_SHAPES.items():
        layer = name.split(".")[0]
        wshape = WEIGHT_SHAPES[f"{layer}.weight"]
        fan_in = int(np.prod(wshape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        sd[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return sd


def random_images(n: int, seed: int = 1) -> np.ndarray:
    """(n,3,32,32) float32 in [-1, 1], like normalised images."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(n, 3, 32, 32)).astype(np.float32)
