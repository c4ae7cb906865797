"""The fused 2x2 max-pool + ReLU training kernels (``_native.pool2_relu`` and its backward,
csrc/core/trainops.c) without PyTorch: every vector instance this CPU runs against the scalar
reference kernel, and both against a NumPy transcription of PyTorch's semantics. Runs where
PyTorch is not installed, the AArch64 run under qemu included (``tools/arm/test.sh``);
``tests/test_trainops.py`` holds the kernels to PyTorch's own ops on x86-64.

The transcription: for each output (n, i, j, c) of an NHWC input, the maximum of the window
x[n, 2i:2i+2, 2j:2j+2, c] taken in row-major order by ``v > m or isnan(v)`` (PyTorch's CPU
max_pool2d: the first of equal maxima, the last NaN), then the ReLU; the gradient of the output
goes to the maximum's position unless the ReLU's output is <= 0 (``threshold_backward``).
"""

from __future__ import annotations

import numpy as np
import pytest

from neonsign import _native
from neonsign.errors import NeonsignTypeError, NeonsignValueError

KERNELS = _native.trainops_kernels()
NO_GRAD = 255


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even (a NaN stays a NaN of its sign)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), ((u >> 16) | 0x40).astype(np.uint16), r)


def bf16_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """relu(max_pool2d) values (float32, NHWC) and arg bytes of float32 NHWC x."""
    n, h, w, c = x.shape
    oh, ow = h // 2, w // 2
    m = np.full((n, oh, ow, c), -np.inf, np.float32)
    arg = np.zeros((n, oh, ow, c), np.uint8)
    for k, (di, dj) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        v = x[:, di : 2 * oh : 2, dj : 2 * ow : 2, :]
        take = (v > m) | np.isnan(v)
        m = np.where(take, v, m)
        arg[take] = k
    dead = m <= 0  # no gradient (False for NaN); relu zeroes only m < 0: -0.0 stays -0.0
    return np.where(m < 0, np.float32(0), m), np.where(dead, np.uint8(NO_GRAD), arg)


def reference_backward(gy: np.ndarray, arg: np.ndarray, h: int, w: int) -> np.ndarray:
    """The gradient added into zeros (PyTorch's scatter): a -0.0 gradient lands as +0.0; any arg
    value other than 0-3 passes none."""
    n, oh, ow, c = arg.shape
    gx = np.zeros((n, h, w, c), gy.dtype)
    sign = gy.dtype.type(1 << (8 * gy.itemsize - 1))
    bits = gy.view(np.uint16 if gy.itemsize == 2 else np.uint32)
    g = np.where(bits == sign, gy.dtype.type(0), gy)
    for k, (di, dj) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        gx[:, di : 2 * oh : 2, dj : 2 * ow : 2, :] = np.where(arg == k, g, 0)
    return gx


def assert_same_bits(got: np.ndarray, want: np.ndarray, err_msg: str = "") -> None:
    """Bit for bit (so -0.0 != +0.0), except that any NaN matches any NaN."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=err_msg)
    u = np.uint16 if got.itemsize == 2 else np.uint32
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got.view(u)[ok], want.view(u)[ok], err_msg=err_msg)


def special_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random values with ties, zeros of both signs, infinities and NaNs sprinkled in."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[rng.random(x.size) < 0.1] = 0.5  # ties
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan], np.float32)
    mask = rng.random(x.size) < 0.05
    x.reshape(-1)[mask] = rng.choice(specials, size=int(mask.sum()))
    return x


SHAPES = [(4, 30, 30, 32), (3, 13, 13, 64), (2, 7, 9, 5), (2, 4, 6, 37), (1, 2, 2, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("nchw", [False, True])
def test_every_kernel_equals_the_transcription(shape, dtype, nchw) -> None:
    x = special_input(shape, seed=sum(shape))
    if dtype == "bfloat16":
        bits = to_bf16_bits(x)
        x, arr, el = bf16_to_f32(bits), bits, np.uint16
    else:
        arr, el = x, np.float32
    want, want_arg = reference(x)
    n, h, w, c = shape
    rng = np.random.default_rng(1)
    gy_nhwc = rng.standard_normal(want.shape).astype(np.float32)
    gy_nhwc[rng.random(want.shape) < 0.1] = -0.0  # lands as +0.0
    gy_nhwc = to_bf16_bits(gy_nhwc) if dtype == "bfloat16" else gy_nhwc
    want_gx = reference_backward(gy_nhwc, want_arg, h, w)
    for kernel in KERNELS:
        y = np.full(
            (n, c, h // 2, w // 2) if nchw else (n, h // 2, w // 2, c), 77, el
        )  # garbage: every element must be written
        arg = np.full(want_arg.shape, 7, np.uint8)
        _native.pool2_relu(arr, y, arg, nchw, kernel)
        got = bf16_to_f32(y) if dtype == "bfloat16" else y
        if nchw:
            got = got.transpose(0, 2, 3, 1)
        assert_same_bits(got, want, err_msg=kernel)
        np.testing.assert_array_equal(arg, want_arg, err_msg=kernel)
        gy = np.ascontiguousarray(gy_nhwc.transpose(0, 3, 1, 2)) if nchw else gy_nhwc
        gx = np.full(shape, 99, el)
        _native.pool2_relu_backward(gy, arg, gx, nchw, kernel)
        if dtype == "bfloat16":
            assert_same_bits(bf16_to_f32(gx), bf16_to_f32(want_gx), err_msg=kernel)
        else:
            assert_same_bits(gx, want_gx, err_msg=kernel)


def test_kernel_list_and_default() -> None:
    assert KERNELS[0] == "ref" and "v16" in KERNELS
    x = special_input((2, 8, 8, 32), 3)
    y1, y2 = np.empty((2, 4, 4, 32), np.float32), np.empty((2, 4, 4, 32), np.float32)
    a1, a2 = np.empty(y1.shape, np.uint8), np.empty(y1.shape, np.uint8)
    _native.pool2_relu(x, y1, a1)  # the default: the last, fastest kernel
    _native.pool2_relu(x, y2, a2, kernel=KERNELS[-1])
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(a1, a2)


def test_bad_arguments_are_clear_errors() -> None:
    x = np.zeros((2, 4, 4, 3), np.float32)
    y = np.zeros((2, 2, 2, 3), np.float32)
    arg = np.zeros((2, 2, 2, 3), np.uint8)
    with pytest.raises(NeonsignTypeError, match="x must be a numpy.ndarray"):
        _native.pool2_relu([1.0], y, arg)
    with pytest.raises(NeonsignValueError, match="float32 or uint16"):
        _native.pool2_relu(x.astype(np.float64), y, arg)
    with pytest.raises(NeonsignValueError, match=r"y must have shape \(2, 2, 2, 3\)"):
        _native.pool2_relu(x, np.zeros((2, 3, 2, 2), np.float32), arg)
    with pytest.raises(NeonsignValueError, match=r"y must have shape \(2, 3, 2, 2\)"):
        _native.pool2_relu(x, y, arg, nchw=True)
    with pytest.raises(NeonsignValueError, match="y must have dtype"):
        _native.pool2_relu(x, y.astype(np.uint16), arg)
    with pytest.raises(NeonsignValueError, match="arg must have dtype"):
        _native.pool2_relu(x, y, arg.astype(np.int32))
    with pytest.raises(NeonsignValueError, match="at least 2x2"):
        _native.pool2_relu(np.zeros((1, 1, 4, 3), np.float32), y, arg)
    with pytest.raises(NeonsignValueError, match="C-contiguous"):
        _native.pool2_relu(np.zeros((2, 4, 4, 6), np.float32)[..., ::2], y, arg)
    ro = y.copy()
    ro.flags.writeable = False
    with pytest.raises(NeonsignValueError, match="y must be writeable"):
        _native.pool2_relu(x, ro, arg)
    with pytest.raises(NeonsignValueError, match="kernel 'sse9' is not one"):
        _native.pool2_relu(x, y, arg, kernel="sse9")
    with pytest.raises(NeonsignTypeError, match="kernel must be a str"):
        _native.pool2_relu(x, y, arg, kernel=3)
    with pytest.raises(NeonsignValueError, match=r"grad_y must have shape"):
        _native.pool2_relu_backward(np.zeros((2, 2, 2, 4), np.float32), arg, x.copy())
    with pytest.raises(NeonsignValueError, match=r"arg must have shape"):
        _native.pool2_relu_backward(y, arg[:1], x.copy())
    with pytest.raises(NeonsignValueError, match="grad_x must be writeable"):
        gx = x.copy()
        gx.flags.writeable = False
        _native.pool2_relu_backward(y, arg, gx)


def _mix32(x: np.ndarray) -> np.ndarray:
    """lowbias32, the kernel's mixer, in uint32 arithmetic (wrapping multiplies)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 12345, 2**64 - 1])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.999])
def test_dropout_keep_is_the_seeds_hash(seed: int, p: float) -> None:
    n = 100_003  # not a multiple of any vector width
    i = np.arange(n, dtype=np.uint32)
    lo, hi = np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)
    with np.errstate(over="ignore"):
        bits = _mix32(_mix32(i + lo) ^ hi)
    want = (bits >= np.uint32(int(p * 2**32))).astype(np.uint8)
    for kernel in KERNELS:
        np.testing.assert_array_equal(_native.dropout_keep(seed, p, n, kernel), want, kernel)
    assert abs(1 - want.mean() - p) < 0.01


def test_pool2_relu_drops_where_the_mask_says() -> None:
    x = np.abs(special_input((4, 30, 30, 32), 9)) + 1  # positive, finite or inf: ReLU keeps all
    x[np.isnan(x)] = 1
    want, want_arg = reference(x)
    keep = _native.dropout_keep(7, 0.3, want.size).reshape(want.shape)
    for kernel in KERNELS:
        y, arg = np.empty_like(want), np.empty(want.shape, np.uint8)
        _native.pool2_relu(x, y, arg, False, kernel, 0.3, 7)
        np.testing.assert_array_equal(y, np.where(keep == 1, want, 0), kernel)
        np.testing.assert_array_equal(arg, np.where(keep == 1, want_arg, NO_GRAD), kernel)
    with pytest.raises(NeonsignValueError, match=r"dropout must be in \[0, 1\)"):
        _native.pool2_relu(x, y, arg, dropout=1.0)
    with pytest.raises(NeonsignTypeError, match="dropout must be a float"):
        _native.pool2_relu(x, y, arg, dropout="0.3")
    with pytest.raises(NeonsignValueError, match="seed"):
        _native.pool2_relu(x, y, arg, dropout=0.3, seed=-1)


def test_backward_passes_no_gradient_for_any_other_arg_value() -> None:
    """arg values other than 0-3 (255 is the kernels' own) route no gradient, on every kernel:
    a corrupt arg array can never write outside the window or the array."""
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.uint16):
        gy = np.ones((2, 3, 3, 37), dtype)
        arg = rng.integers(0, 256, gy.shape).astype(np.uint8)
        want = reference_backward(gy, arg, 7, 6)
        assert want.any()
        for kernel in KERNELS:
            gx = np.full((2, 7, 6, 37), 9, dtype)
            _native.pool2_relu_backward(gy, arg, gx, False, kernel)
            np.testing.assert_array_equal(gx, want, err_msg=kernel)


def test_byte_swapped_arrays_are_refused() -> None:
    x = np.zeros((2, 4, 4, 3), ">f4")
    y = np.zeros((2, 2, 2, 3), np.float32)
    arg = np.zeros((2, 2, 2, 3), np.uint8)
    with pytest.raises(NeonsignValueError, match="x must have dtype"):
        _native.pool2_relu(x, y, arg)
    with pytest.raises(NeonsignValueError, match="y must have dtype"):
        _native.pool2_relu(x.astype(np.float32), y.astype(">f4"), arg)
