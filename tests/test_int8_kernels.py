"""int8 kernels (issue 16, part 2): every int8 kernel bit-exact against the scalar reference,
per layer on many shapes and for the whole net; the scalar reference against an independent
NumPy int64 model of the same arithmetic (no PyTorch)."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from neonsign import _native
from neonsign.engine import Engine, available_int8_kernels
from neonsign.errors import NeonsignValueError, UnsupportedError
from neonsign.quantize import engine_params, quantization_section
from serve_helpers import random_state_dict

KERNELS = available_int8_kernels()

# (n, cin, h, w, cout): the net's layers, channel counts off the K group, ragged NR blocks
CONV_SHAPES = [
    (1, 4, 32, 32, 32),
    (2, 32, 15, 15, 64),
    (1, 3, 8, 8, 5),
    (2, 5, 7, 9, 13),
    (1, 8, 6, 17, 43),
    (1, 16, 5, 40, 70),
    (1, 12, 4, 4, 33),
]


def requant(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """int8_kernels.h's requantization in NumPy int64 (independent of the C code)."""
    t = (acc.astype(np.int64) * mult.astype(np.int64) + (1 << 30)) >> 31
    rnd = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    t = (t + rnd) >> shift
    return np.clip(t, 0, 255).astype(np.uint8)


def _layer(rng, cout, k, wshape):
    w = rng.integers(-127, 128, wshape, dtype=np.int64).astype(np.int8)
    b = rng.integers(-20000, 20000, cout).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, cout).astype(np.int32)
    shift = rng.integers(0, 14, cout).astype(np.int32)
    shift[: min(2, cout)] = 0  # the no-shift path too
    return w, b, mult, shift


def _conv_acc(x, w, b):
    win = np.lib.stride_tricks.sliding_window_view(x.astype(np.int64), (3, 3), axis=(2, 3))
    acc = np.einsum("nchwij,ocij->nohw", win, w.astype(np.int64))
    return acc + b[None, :, None, None]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", CONV_SHAPES)
@pytest.mark.parametrize("pool", [False, True])
def test_qconv_bit_exact(kernel, shape, pool):
    n, cin, h, w_, cout = shape
    rng = np.random.default_rng(sum(shape) + pool)
    x = rng.integers(0, 256, (n, cin, h, w_)).astype(np.uint8)
    w, b, mult, shift = _layer(rng, cout, 9 * cin, (cout, cin, 3, 3))
    want = requant(_conv_acc(x, w, b), mult[None, :, None, None], shift[None, :, None, None])
    if pool:
        hh, ww = want.shape[2] // 2 * 2, want.shape[3] // 2 * 2
        want = want[:, :, :hh, :ww].reshape(n, cout, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
    got = _native.qkernel_conv3x3(kernel, x, w, b, mult, shift, pool=pool)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "rows,k,n",
    [
        (1, 2304, 128),
        (64, 2304, 128),
        (17, 128, 43),
        (3, 128, 43),
        (13, 20, 33),
        (100, 36, 70),
        (1, 6, 1),
    ],
)
@pytest.mark.parametrize("dequant", [False, True])
def test_qlinear_bit_exact(kernel, rows, k, n, dequant):
    rng = np.random.default_rng(rows * 1000 + k + n + dequant)
    x = rng.integers(0, 256, (rows, k)).astype(np.uint8)
    w, b, mult, shift = _layer(rng, n, k, (n, k))
    acc = x.astype(np.int64) @ w.astype(np.int64).T + b
    if dequant:
        scale = rng.uniform(1e-5, 1e-3, n).astype(np.float32)
        got = _native.qkernel_linear(kernel, x, w, b, scale=scale)
        want = acc.astype(np.float32) * scale  # exact: |acc| < 2^24, one float multiply
        assert got.dtype == np.float32
    else:
        got = _native.qkernel_linear(kernel, x, w, b, mult, shift)
        want = requant(acc, mult, shift)
    np.testing.assert_array_equal(got, want)


def _model():
    sd = random_state_dict(3)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (70, 3, 32, 32)).astype(np.float32)
    return sd, quantization_section(sd, x[:40]), x


def _numpy_int8_forward(params, x):
    """The int8 net in NumPy int64, written from the docs (independent of the C reference)."""
    q = np.clip(np.rint(x * params["input.inv_scale"][0]), -128, 127).astype(np.int64) + 128

    def conv_pool(a, name):
        acc = _conv_acc(a, params[f"{name}.weight"], params[f"{name}.bias"].astype(np.int64))
        o = requant(
            acc,
            params[f"{name}.mult"][None, :, None, None],
            params[f"{name}.shift"][None, :, None, None],
        )
        n, c, h, w = o.shape
        return (
            o[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        )

    p2 = conv_pool(conv_pool(q, "conv1"), "conv2").reshape(len(x), -1).astype(np.int64)
    h = requant(
        p2 @ params["fc1.weight"].astype(np.int64).T + params["fc1.bias"],
        params["fc1.mult"],
        params["fc1.shift"],
    )
    acc = h.astype(np.int64) @ params["fc2.weight"].astype(np.int64).T + params["fc2.bias"]
    return acc.astype(np.float32) * params["fc2.scale"]


def test_reference_net_matches_numpy_model():
    sd, q, x = _model()
    want = _numpy_int8_forward(engine_params(sd, q), x[:6])
    got = Engine(sd, kernel="ref", quantization=q).predict(x[:6])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k != "ref"])
def test_net_bit_exact_every_batch_and_thread_count(kernel):
    sd, q, x = _model()
    ref = Engine(sd, kernel="ref", quantization=q).predict(x)
    eng = Engine(sd, kernel=kernel, quantization=q)
    assert eng.precision == "int8" and eng.kernel == kernel
    np.testing.assert_array_equal(eng.predict(x), ref)
    np.testing.assert_array_equal(np.stack([eng.predict(xi) for xi in x[:5]]), ref[:5])
    eng.threads = 1
    np.testing.assert_array_equal(eng.predict(x), ref)
    assert eng.layer_kernels["conv1"].startswith("ns_qconv_pool_" + kernel)


def test_kernel_property_and_environment(monkeypatch):
    sd, q, x = _model()
    eng = Engine(sd, quantization=q)
    assert eng.kernel == KERNELS[-1]  # the best
    eng.kernel = "ref"
    assert eng.kernel == "ref" and eng.tile == "scalar"
    monkeypatch.setenv("NEONSIGN_KERNEL", "ref")
    assert Engine(sd, quantization=q).kernel == "ref"
    monkeypatch.setenv("NEONSIGN_KERNEL", "avx512")  # an FP32 kernel name: the best int8 one
    assert Engine(sd, quantization=q).kernel == KERNELS[-1]


def test_best_kernel_is_the_one_this_cpu_model_should_pick():
    """tools/arm/test.sh runs this file under qemu CPU models with and without I8MM and names the
    kernel dispatch must choose there (HWCAP/HWCAP2); on x86-64 the CPU flags decide."""
    want = os.environ.get("NEONSIGN_EXPECT_INT8_KERNEL")
    if not want:
        x86 = platform.machine() == "x86_64" and os.path.exists("/proc/cpuinfo")
        with open("/proc/cpuinfo" if x86 else os.devnull) as f:
            flags = f.read()
        if " avx512_vnni" not in flags:
            pytest.skip("no expectation for this CPU (set NEONSIGN_EXPECT_INT8_KERNEL)")
        want = "avx512vnni"
    assert available_int8_kernels()[-1] == want
    assert _native.available_int8_kernels()[0] == "ref"


def test_unknown_and_unavailable_int8_kernels():
    sd, q, _ = _model()
    with pytest.raises(ValueError, match="not an int8 kernel name"):
        Engine(sd, kernel="sse9", quantization=q)
    for k in (k for k in _native.INT8_KERNELS if k not in KERNELS):
        with pytest.raises(UnsupportedError, match="available"):
            Engine(sd, kernel=k, quantization=q)


def test_qkernel_rejects_bad_arrays():
    x = np.zeros((1, 4, 6, 6), np.uint8)
    w = np.zeros((2, 4, 3, 3), np.int8)
    b = np.zeros(2, np.int32)
    m = np.full(2, 1 << 30, np.int32)
    s = np.zeros(2, np.int32)
    with pytest.raises(ValueError, match="int8"):
        _native.qkernel_conv3x3("ref", x, w.astype(np.int16), b, m, s)
    with pytest.raises(NeonsignValueError, match="out of range"):
        _native.qkernel_conv3x3("ref", x, w, b, m - 1, s)
