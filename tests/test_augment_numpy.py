"""The training augmentation's C kernel (``_native.augment``) against a NumPy transcription of
what it computes, without PyTorch: so it also runs where PyTorch is not installed, the AArch64
run under qemu included (``tools/arm/test.sh``), where the kernel's vector code compiles to
NEON. ``tests/test_train_step.py`` holds it to PyTorch's own ``affine_grid`` +
``grid_sample`` on x86-64.

The reference, per image: the output pixel (i, j) at normalised coordinates
``((2j + 1) / W - 1, (2i + 1) / H - 1)`` (``affine_grid``, ``align_corners=False``) is mapped
through the 2x3 ``theta`` to ``(gx, gy)``, unnormalised to ``((gx + 1) * W - 1) / 2`` and
clipped to the image (``padding_mode="border"``), and sampled bilinearly; then the mean of the
resampled image, the jitter ``y * c / 255 + mean * (b - c) / 255`` clamped to [0, 1], and the
normalisation ``(y - mean[ch]) / std[ch]``.
"""

from __future__ import annotations

import numpy as np
import pytest

from neonsign import _native


def reference(
    images: np.ndarray,
    theta: np.ndarray,
    bright: np.ndarray,
    contrast: np.ndarray,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> np.ndarray:
    n, h, w, _ = images.shape
    xs = (2 * np.arange(w) + 1) / w - 1
    ys = (2 * np.arange(h) + 1) / h - 1
    gx0, gy0 = np.meshgrid(xs, ys)  # (h, w)
    out = np.empty((n, h, w, 3))
    for k in range(n):
        t = theta[k].astype(np.float64)
        gx = t[0, 0] * gx0 + t[0, 1] * gy0 + t[0, 2]
        gy = t[1, 0] * gx0 + t[1, 1] * gy0 + t[1, 2]
        ix = np.clip(((gx + 1) * w - 1) / 2, 0, w - 1)
        iy = np.clip(((gy + 1) * h - 1) / 2, 0, h - 1)
        x0, y0 = np.floor(ix).astype(int), np.floor(iy).astype(int)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        wx, wy = (ix - x0)[..., None], (iy - y0)[..., None]
        img = images[k].astype(np.float64)
        y = (
            img[y0, x0] * (1 - wx) * (1 - wy)
            + img[y0, x1] * wx * (1 - wy)
            + img[y1, x0] * (1 - wx) * wy
            + img[y1, x1] * wx * wy
        )
        mu = y.mean()
        y = np.clip(y * contrast[k] / 255 + mu * (bright[k] - contrast[k]) / 255, 0, 1)
        out[k] = (y - np.asarray(mean)) / np.asarray(std)
    return out


@pytest.mark.parametrize("h, w", [(32, 32), (17, 23), (5, 1), (1, 1)])
@pytest.mark.parametrize("spread", [0.2, 1.0, 3.0])
def test_augment_equals_its_numpy_transcription(h: int, w: int, spread: float) -> None:
    rng = np.random.default_rng(h * 31 + w + int(spread * 7))
    n = 11
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    theta = (np.eye(2, 3) + spread * rng.standard_normal((n, 2, 3))).astype(np.float32)
    bright = rng.uniform(0.2, 1.8, n).astype(np.float32)
    contrast = rng.uniform(0.2, 1.8, n).astype(np.float32)
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    got = _native.augment(images, theta, bright, contrast, mean, std)
    assert got.dtype == np.float32 and got.shape == (n, h, w, 3)
    want = reference(images, theta, bright, contrast, mean, std)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)
