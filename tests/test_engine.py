"""The native engine against a NumPy float64 reference, the scalar `ref` kernel and PyTorch.

PyTorch-specific tests skip themselves where torch is missing (the AArch64 run under qemu);
everything else compares against engine_reference (NumPy) and the `ref` kernel in-process.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import neonsign
from engine_reference import forward as np_forward
from engine_reference import random_images, random_state_dict
from neonsign.engine import LAYERS, Engine, available_kernels
from neonsign.errors import ModelError, NeonsignValueError, UnsupportedError
from support import EMULATED

KERNELS = available_kernels()
BATCHES = [1, 3, 17, 64]
TOL = 1e-3  # the product's bound on the max abs logit difference


@pytest.fixture(scope="module")
def sd():
    return random_state_dict(0)


@pytest.fixture(scope="module")
def images():
    return random_images(64, seed=1)


@pytest.fixture()
def two_threads():
    before = neonsign.get_threads()
    neonsign.set_threads(2)
    yield
    neonsign.set_threads(before)


def _torch_net(sd):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    F = torch.nn.functional

    class TrafficSignNet(nn.Module):  # the learning path's model
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 3)
            self.conv2 = nn.Conv2d(32, 64, 3)
            self.fc1 = nn.Linear(64 * 6 * 6, 128)
            self.fc2 = nn.Linear(128, 43)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            return self.fc2(F.relu(self.fc1(x)))

    net = TrafficSignNet().eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    return net


# ---- correctness -------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n", BATCHES)
def test_engine_vs_numpy_reference(sd, images, kernel, n):
    if EMULATED and kernel == "ref" and n == 64:
        pytest.skip("the scalar kernel at batch 64 is too slow under emulation (batch 17 runs)")
    eng = Engine(sd, kernel=kernel)
    assert eng.kernel == kernel
    got = eng.predict(images[:n])
    want = np_forward(sd, images[:n])
    assert got.shape == (n, 43) and got.dtype == np.float32
    diff = np.abs(got - want).max()
    assert diff <= 1e-4, f"{kernel} batch {n}: max abs diff {diff}"
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k != "ref"])
def test_simd_vs_ref_kernel(sd, images, kernel):
    x = images[:17] if EMULATED else images  # the scalar kernel is slow under emulation
    ref = Engine(sd, kernel="ref").predict(x)
    got = Engine(sd, kernel=kernel).predict(x)
    assert np.abs(got - ref).max() <= 1e-4
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))


@pytest.mark.torch
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n", BATCHES)
def test_engine_vs_pytorch(sd, images, kernel, n):
    torch = pytest.importorskip("torch")
    net = _torch_net(sd)
    with torch.no_grad():
        want = net(torch.from_numpy(images[:n])).numpy()
    got = Engine.from_torch(net, kernel=kernel).predict(images[:n])
    diff = np.abs(got - want).max()
    assert diff <= TOL, f"{kernel} batch {n}: max abs diff {diff}"
    assert diff <= 1e-4  # what we actually achieve (~1e-6)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.torch
@pytest.mark.parametrize("kernel", KERNELS)
def test_layers_vs_pytorch(sd, images, kernel):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    from neonsign import _native

    t = {k: torch.from_numpy(v) for k, v in sd.items()}
    x = images[:5]
    with torch.no_grad():
        p1 = F.max_pool2d(
            F.relu(F.conv2d(torch.from_numpy(x), t["conv1.weight"], t["conv1.bias"])), 2
        )
        p2 = F.max_pool2d(F.relu(F.conv2d(p1, t["conv2.weight"], t["conv2.bias"])), 2)
        h = F.relu(F.linear(p2.flatten(1), t["fc1.weight"], t["fc1.bias"]))
        out = F.linear(h, t["fc2.weight"], t["fc2.bias"])
    got1 = _native.kernel_conv3x3(
        kernel, x, sd["conv1.weight"], sd["conv1.bias"], relu=True, pool=True
    )
    np.testing.assert_allclose(got1, p1.numpy(), atol=1e-5, rtol=1e-5)
    got2 = _native.kernel_conv3x3(
        kernel, p1.numpy(), sd["conv2.weight"], sd["conv2.bias"], relu=True, pool=True
    )
    np.testing.assert_allclose(got2, p2.numpy(), atol=1e-5, rtol=1e-5)
    goth = _native.kernel_linear(
        kernel, p2.flatten(1).numpy(), sd["fc1.weight"], sd["fc1.bias"], relu=True
    )
    np.testing.assert_allclose(goth, h.numpy(), atol=1e-5, rtol=1e-5)
    goto = _native.kernel_linear(kernel, h.numpy(), sd["fc2.weight"], sd["fc2.bias"])
    np.testing.assert_allclose(goto, out.numpy(), atol=1e-5, rtol=1e-5)


def test_large_batch_spans_chunks(sd):
    x = random_images(
        300, seed=5
    )  # default kernel: SIMD (neon under emulation)  # more than one internal chunk of 256 images
    eng = Engine(sd)
    got = eng.predict(x)
    np.testing.assert_array_equal(got[:64], eng.predict(x[:64]))
    # the float64 reference on the second chunk and a slice of the first (fast under qemu)
    assert np.abs(got[240:] - np_forward(sd, x[240:])).max() <= 1e-4


def test_single_image_and_classify(sd, images):
    eng = Engine(sd)
    one = eng.predict(images[0])
    assert one.shape == (43,)
    np.testing.assert_array_equal(one, eng.predict(images[:1])[0])
    classes, probs = eng.classify(images[:17])
    logits = eng.predict(images[:17])
    assert classes.dtype == np.int64 and probs.dtype == np.float32
    np.testing.assert_array_equal(classes, logits.argmax(1))
    z = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, (z / z.sum(1, keepdims=True)).max(1), rtol=1e-5)
    c1, p1 = eng.classify(images[0])
    assert int(c1) == classes[0] and np.ndim(c1) == 0


def test_float64_input_is_converted(sd, images):
    eng = Engine(sd)
    np.testing.assert_array_equal(
        eng.predict(images[:3].astype(np.float64)), eng.predict(images[:3])
    )


# ---- kernels -------------------------------------------------------------------------------------


def test_kernel_setter_repacks(sd, images):
    eng = Engine(sd)
    best = eng.kernel
    first = eng.predict(images[:8])
    eng.kernel = "ref"
    assert eng.kernel == "ref"
    np.testing.assert_allclose(eng.predict(images[:8]), first, atol=1e-4)
    eng.kernel = best
    np.testing.assert_array_equal(eng.predict(images[:8]), first)


def test_kernel_env_override(sd, monkeypatch):
    monkeypatch.setenv("NEONSIGN_KERNEL", "ref")
    assert Engine(sd).kernel == "ref"
    # an explicit argument beats the environment
    assert Engine(sd, kernel=KERNELS[-1]).kernel == KERNELS[-1]
    monkeypatch.setenv("NEONSIGN_KERNEL", "nonsense")
    with pytest.raises(ValueError, match="NEONSIGN_KERNEL 'nonsense'"):
        Engine(sd)


def test_unavailable_kernel_is_a_clear_error(sd):
    missing = [k for k in ("neon", "avx2", "avx512") if k not in KERNELS]
    assert missing, "one of neon / avx2+avx512 can never be available"
    for k in missing:
        with pytest.raises(UnsupportedError, match=f"'{k}' is not available.*available: ref"):
            Engine(sd, kernel=k)
    eng = Engine(sd, kernel="ref")
    with pytest.raises(UnsupportedError):
        eng.kernel = missing[0]
    assert eng.kernel == "ref"  # unchanged after a failed switch
    with pytest.raises(ValueError, match="not a kernel name"):
        Engine(sd, kernel="fastest")


def test_available_kernels():
    ks = Engine.available_kernels()
    assert ks[0] == "ref" and len(ks) >= 1
    assert set(ks) <= {"ref", "neon", "avx2", "avx512"}
    arch = neonsign._native.build_info()["arch"]
    if arch == "aarch64":
        assert "neon" in ks
    if arch == "x86_64":
        assert "neon" not in ks


# ---- threads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n", [1, 3, 64])
def test_thread_count_invariance(sd, images, kernel, n, two_threads):
    if EMULATED and kernel == "ref" and n == 64:
        pytest.skip("the scalar kernel at batch 64 is too slow under emulation")
    eng = Engine(sd, kernel=kernel, threads=1)
    one = eng.predict(images[:n])
    eng.threads = 2
    two = eng.predict(images[:n])
    eng.threads = None
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k != "ref"])
def test_small_batch_mode_choice_keeps_outputs(sd, images, kernel, two_threads):
    # With fewer images than threads the engine times its two small-batch modes (conv layers
    # split between threads, or whole images in parallel) over its first calls, then keeps the
    # faster: every call, during and after that choice, must give the same bits.
    eng = Engine(sd, kernel=kernel, threads=1)
    one = eng.predict(images[:1])
    eng.threads = 2
    for _ in range(20):
        np.testing.assert_array_equal(eng.predict(images[:1]), one)
    eng.kernel = kernel  # repacking measures again
    np.testing.assert_array_equal(eng.predict(images[:1]), one)


def test_concurrent_predict_from_four_threads(sd, images, two_threads):
    eng = Engine(sd)
    want = [eng.predict(images[i : i + 16]) for i in range(4)]
    results: list = [None] * 4
    errors: list = []

    def work(i):
        try:
            for _ in range(5):
                got = eng.predict(images[i : i + 16])
                np.testing.assert_array_equal(got, want[i])
            results[i] = got
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    for i in range(4):
        np.testing.assert_array_equal(results[i], want[i])


def test_threads_property_validation(sd):
    eng = Engine(sd)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(NeonsignValueError):
            eng.threads = bad


# ---- timers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_timers_add_up(sd, images, kernel):
    eng = Engine(sd, kernel=kernel)
    eng.predict(images[:32])  # warm-up (scratch allocation)
    assert all(v == (0, 0) for v in eng.timers().values())  # off by default
    eng.enable_timers(True)
    t0 = time.perf_counter_ns()
    for _ in range(3):
        eng.predict(images[:32])
    wall = time.perf_counter_ns() - t0
    timers = eng.timers()
    assert tuple(timers) == LAYERS
    assert all(calls == 3 for _, calls in timers.values())
    total = sum(ns for ns, _ in timers.values())
    assert 0.5 * wall <= total <= wall, (total, wall)
    assert timers["conv1"][0] > 0 and timers["conv2"][0] > 0 and timers["fc1"][0] > 0
    eng.reset_timers()
    assert all(v == (0, 0) for v in eng.timers().values())
    eng.enable_timers(False)
    eng.predict(images[:4])
    assert all(v == (0, 0) for v in eng.timers().values())


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 3, 28, 28), np.float32),
        np.zeros((2, 1, 32, 32), np.float32),
        np.zeros((0, 3, 32, 32), np.float32),
        np.zeros((32, 32, 3), np.float32),
        np.zeros((3 * 32 * 32,), np.float32),
        np.zeros((2, 3, 32, 32), np.int32),
        np.zeros((2, 3, 32, 32), np.uint8),
    ],
)
def test_bad_inputs(sd, bad):
    eng = Engine(sd)
    with pytest.raises(ValueError):
        eng.predict(bad)


def test_native_forward_validates(sd, images):
    eng = Engine(sd)
    with pytest.raises(NeonsignValueError, match="C-contiguous"):
        eng._net.forward(np.asfortranarray(images[:2]))
    with pytest.raises(NeonsignValueError, match="float32"):
        eng._net.forward(images[:2].astype(np.float64))
    with pytest.raises(NeonsignValueError, match=r"shape \(N, 3, 32, 32\)"):
        eng._net.forward(images[:2, :, :31].copy())
    with pytest.raises(ValueError):
        eng._net.forward(images[:2], -1)
    # a non-contiguous view is fine through the Python API (it copies)
    np.testing.assert_array_equal(eng.predict(images[:4:2]), eng.predict(images[[0, 2]]))


def test_bad_weights(sd):
    missing = dict(sd)
    del missing["fc2.bias"]
    with pytest.raises(ModelError, match="missing fc2.bias"):
        Engine(missing)
    wrong = dict(sd, **{"conv2.weight": np.zeros((64, 32, 5, 5), np.float32)})
    with pytest.raises(ModelError, match=r"conv2.weight.*\(64, 32, 3, 3\).*\(64, 32, 5, 5\)"):
        Engine(wrong)
    nan = dict(sd, **{"fc1.bias": np.full(128, np.nan, np.float32)})
    with pytest.raises(ModelError, match="NaN"):
        Engine(nan)
    text = dict(sd, **{"fc1.bias": np.array(["a"] * 128)})
    with pytest.raises(ModelError, match="numeric"):
        Engine(text)
    with pytest.raises(ModelError):
        Engine([1, 2, 3])  # type: ignore[arg-type]


def test_native_create_names_the_tensor(sd):
    from neonsign import _native

    weights = dict(sd, **{"fc1.weight": np.zeros((128, 2300), np.float32)})
    with pytest.raises(
        ModelError, match=r"fc1.weight must have shape \(128, 2304\), got \(128, 2300\)"
    ):
        _native.Net(weights)
    weights["fc1.weight"] = sd["fc1.weight"].astype(np.float64)
    with pytest.raises(ModelError, match="fc1.weight must have dtype float32"):
        _native.Net(weights)


def test_prefixed_state_dict(sd, images):
    prefixed = {f"module.{k}": v for k, v in sd.items()}
    np.testing.assert_array_equal(
        Engine(prefixed).predict(images[:2]), Engine(sd).predict(images[:2])
    )


# ---- files --------------------------------------------------------------------------------------


def test_from_file_safetensors_and_dir(sd, images, tmp_path):
    from safetensors.numpy import save_file

    f = tmp_path / "model.safetensors"
    save_file(sd, str(f))
    want = Engine(sd).predict(images[:3])
    np.testing.assert_array_equal(Engine.from_file(f).predict(images[:3]), want)
    np.testing.assert_array_equal(Engine.from_file(tmp_path).predict(images[:3]), want)


def test_from_file_errors(sd, tmp_path):
    with pytest.raises(FileNotFoundError):
        Engine.from_file(tmp_path / "nope.safetensors")
    with pytest.raises(ModelError, match="no model.safetensors"):
        Engine.from_file(tmp_path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="junk.safetensors"):
        Engine.from_file(junk)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model file type"):
        Engine.from_file(other)
    from safetensors.numpy import save_file

    partial = {k: v for k, v in sd.items() if k != "conv1.bias"}
    p = tmp_path / "partial.safetensors"
    save_file(partial, str(p))
    with pytest.raises(ModelError, match="partial.safetensors.*missing conv1.bias"):
        Engine.from_file(p)


@pytest.mark.torch
def test_from_file_pth(sd, images, tmp_path):
    torch = pytest.importorskip("torch")
    net = _torch_net(sd)
    p = tmp_path / "model.pth"
    torch.save(net.state_dict(), p)
    np.testing.assert_array_equal(
        Engine.from_file(p).predict(images[:3]), Engine(sd).predict(images[:3])
    )
    e = Engine.from_state_dict(net.state_dict())
    np.testing.assert_array_equal(e.predict(images[:3]), Engine(sd).predict(images[:3]))
    # half-precision tensors are widened to float32
    half = {k: v.to(torch.bfloat16) for k, v in net.state_dict().items()}
    want = {k: v.float().numpy() for k, v in half.items()}
    np.testing.assert_array_equal(
        Engine(half).predict(images[:3]), Engine(want).predict(images[:3])
    )
