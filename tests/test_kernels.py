"""Every SIMD kernel against the scalar reference, per layer, on many shapes (no PyTorch)."""

from __future__ import annotations

import numpy as np
import pytest

from engine_reference import conv3x3, linear, maxpool2x2, relu
from neonsign import _native
from neonsign.engine import available_kernels
from neonsign.errors import NeonsignValueError, UnsupportedError

KERNELS = available_kernels()
SIMD = [k for k in KERNELS if k != "ref"]

# (n, cin, h, w, cout): the net's layers, odd sizes, ragged channel counts, tiny images
CONV_SHAPES = [
    (1, 3, 32, 32, 32),
    (2, 32, 15, 15, 64),
    (1, 1, 3, 3, 1),
    (3, 5, 7, 9, 13),
    (1, 3, 32, 17, 43),
    (2, 7, 11, 30, 70),
    (1, 32, 5, 40, 16),
    (1, 16, 4, 4, 33),
]


def _conv_inputs(n, cin, h, w, cout, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    wt = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) * 0.1
    return x, wt, b


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", CONV_SHAPES)
@pytest.mark.parametrize("relu_on", [False, True])
def test_conv3x3_vs_reference(kernel, shape, relu_on):
    x, w, b = _conv_inputs(*shape, seed=sum(shape))
    want = conv3x3(x, w, b)
    if relu_on:
        want = relu(want)
    got = _native.kernel_conv3x3(kernel, x, w, b, relu=relu_on, pool=False)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if kernel != "ref":
        ref = _native.kernel_conv3x3("ref", x, w, b, relu=relu_on, pool=False)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", [s for s in CONV_SHAPES if s[2] >= 4 and s[3] >= 4])
def test_conv3x3_relu_pool_vs_reference(kernel, shape):
    x, w, b = _conv_inputs(*shape, seed=7 + sum(shape))
    want = maxpool2x2(relu(conv3x3(x, w, b)))
    got = _native.kernel_conv3x3(kernel, x, w, b, relu=True, pool=True)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "rows,k,n",
    [
        (1, 2304, 128),
        (64, 2304, 128),
        (17, 128, 43),
        (3, 128, 43),
        (1, 1, 1),
        (13, 5, 33),
        (100, 31, 70),
        (25, 64, 16),
    ],
)
@pytest.mark.parametrize("relu_on", [False, True])
def test_linear_vs_reference(kernel, rows, k, n, relu_on):
    rng = np.random.default_rng(rows * 1000 + k + n)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    want = linear(x, w, b)
    if relu_on:
        want = relu(want)
    got = _native.kernel_linear(kernel, x, w, b, relu=relu_on)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv_rejects_bad_inputs():
    x, w, b = _conv_inputs(1, 3, 8, 8, 4, seed=0)
    with pytest.raises(NeonsignValueError, match="dtype float32"):
        _native.kernel_conv3x3("ref", x.astype(np.float64), w, b)
    with pytest.raises(NeonsignValueError, match="weight must have shape"):
        _native.kernel_conv3x3("ref", x, w[:, :2], b)
    with pytest.raises(NeonsignValueError, match="bias must have shape"):
        _native.kernel_conv3x3("ref", x, w, b[:3])
    with pytest.raises(NeonsignValueError, match="C-contiguous"):
        _native.kernel_conv3x3("ref", x[:, :, :, ::2], w, b)
    with pytest.raises(ValueError, match="at least 4x4"):
        _native.kernel_conv3x3("ref", x[:, :, :3, :3].copy(), w, b, pool=True)


def test_unknown_and_unavailable_kernels():
    x = np.zeros((1, 4), np.float32)
    w = np.zeros((2, 4), np.float32)
    b = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="not a kernel name"):
        _native.kernel_linear("sse9", x, w, b)
    missing = [k for k in ("neon", "avx2", "avx512") if k not in KERNELS]
    for k in missing:
        with pytest.raises(UnsupportedError, match="available"):
            _native.kernel_linear(k, x, w, b)
