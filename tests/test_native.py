"""The typed native layer (neonsign._native, csrc/binding/): the Net type, the argument-parsing
convention, neonsign.errors for every bad input, the lazily read NEONSIGN_THREADS, the facts and
the version exported once, module state (multi-phase init) and the .pyi stub."""

from __future__ import annotations

import ast
import errno
import gc
import importlib.util
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import neonsign
from engine_reference import random_images, random_state_dict
from neonsign import _native, errors
from support import needs_subprocess

STUB = Path(neonsign.__file__).with_name("_native.pyi")


@pytest.fixture(scope="module")
def sd():
    return random_state_dict(0)


@pytest.fixture(scope="module")
def net(sd):
    return _native.Net(sd, kernel="ref")


@pytest.fixture(scope="module")
def x():
    return random_images(3, seed=2)


# ---- Net ------------------------------------------------------------------------------------


def test_net_is_a_type_with_methods(net, sd, x):
    assert isinstance(net, _native.Net)
    assert type(net).__module__ == "neonsign._native"
    assert net.kernel == "ref"
    assert "ref" in repr(net)
    out = net.forward(x)
    assert out.shape == (3, _native.NUM_CLASSES) and out.dtype == np.float32
    np.testing.assert_array_equal(net.forward(x=x, threads=1), out)
    assert net.set_kernel(name="ref") == "ref"
    assert net.timers_enabled is False
    net.enable_timers()
    assert net.timers_enabled is True
    net.forward(x)
    timers = net.timers()
    assert tuple(timers) == _native.LAYER_NAMES
    assert timers["conv1"][1] == 1 and all(isinstance(v, int) for t in timers.values() for v in t)
    net.reset_timers()
    assert all(t == (0, 0) for t in net.timers().values())
    net.enable_timers(on=False)
    assert net.timers_enabled is False


def test_net_cannot_be_subclassed_or_built_half():
    with pytest.raises(TypeError):
        type("Sub", (_native.Net,), {})
    with pytest.raises(
        errors.NeonsignTypeError, match=r"Net\(\) missing required argument 'weights'"
    ):
        _native.Net()
    with pytest.raises(TypeError):
        _native.Span()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda n, x: n.forward("images"), "input x must be a numpy.ndarray, got str"),
        (lambda n, x: n.forward([[0.0]]), "numpy.ndarray, got list"),
        (lambda n, x: n.forward(x, "2"), "threads"),
        (lambda n, x: n.forward(x, 1.5), "threads"),
        (lambda n, x: n.forward(), r"forward\(\) missing required argument 'x'"),
        (lambda n, x: n.forward(x, 1, 2), r"forward\(\) takes at most 2 arguments \(3 given\)"),
        (lambda n, x: n.forward(x, thread=1), "unexpected keyword argument 'thread'"),
        (lambda n, x: n.forward(x, x=x), "multiple values for argument 'x'"),
        (lambda n, x: n.set_kernel(3), "kernel must be a str or None, got int"),
        (lambda n, x: n.set_kernel(), "missing required argument 'name'"),
        (lambda n, x: n.timers(1), r"Net.timers\(\) takes no arguments \(1 given\)"),
        (lambda n, x: n.reset_timers(now=True), "takes no keyword arguments"),
        (lambda n, x: _native.get_threads(1), r"get_threads\(\) takes no arguments"),
        (lambda n, x: _native.Net([1, 2, 3]), "weights must be a mapping"),
        (lambda n, x: _native.Net({}, kernel=b"ref"), "kernel must be a str or None, got bytes"),
        (lambda n, x: _native.resolve_kernel(7), "kernel must be a str or None, got int"),
        (lambda n, x: _native.kernel_linear("ref", "x", "w", "b"), "x must be a numpy.ndarray"),
    ],
)
def test_wrong_types_are_neonsign_type_errors(net, x, call, match):
    with pytest.raises(errors.NeonsignTypeError, match=match):
        call(net, x)


@pytest.mark.parametrize(
    ("shape", "dtype", "match"),
    [
        ((2, 3, 32), np.float32, r"must have shape \(N, 3, 32, 32\), got \(2, 3, 32\)"),
        ((2, 3, 32, 31), np.float32, r"got \(2, 3, 32, 31\)"),
        ((2, 4, 32, 32), np.float32, r"got \(2, 4, 32, 32\)"),
        ((0, 3, 32, 32), np.float32, r"got \(0, 3, 32, 32\)"),
        ((3, 32, 32), np.float32, r"got \(3, 32, 32\)"),
        ((1, 3, 32, 32, 1), np.float32, "must have shape"),
        ((2, 3, 32, 32), np.float64, "dtype float32, got float64"),
        ((2, 3, 32, 32), np.int8, "dtype float32, got int8"),
    ],
)
def test_net_forward_rejects_bad_shapes(net, shape, dtype, match):
    with pytest.raises(errors.NeonsignValueError, match=match):
        net.forward(np.zeros(shape, dtype))


def test_net_forward_rejects_bad_layouts_and_thread_counts(net, x):
    with pytest.raises(errors.NeonsignValueError, match="C-contiguous"):
        net.forward(np.asfortranarray(x))
    with pytest.raises(errors.NeonsignValueError, match="C-contiguous"):
        net.forward(np.repeat(x, 2, axis=0)[::2])
    with pytest.raises(errors.NeonsignValueError, match=r"threads must be between 0 .* 256"):
        net.forward(x, 257)
    with pytest.raises(errors.NeonsignValueError):
        net.forward(x, -1)


def test_net_weights_errors_name_the_tensor(sd):
    missing = {k: v for k, v in sd.items() if k != "conv2.bias"}
    with pytest.raises(errors.ModelError, match="weights have no conv2.bias"):
        _native.Net(missing)
    with pytest.raises(errors.NeonsignTypeError, match="conv1.weight must be a numpy.ndarray"):
        _native.Net(dict(sd, **{"conv1.weight": [[0.0]]}))
    with pytest.raises(errors.UnsupportedError):
        _native.Net(
            sd, kernel=next(k for k in _native.KERNELS if k not in _native.available_kernels())
        )
    with pytest.raises(errors.NeonsignValueError, match="not a kernel name"):
        _native.Net(sd, kernel="fastest")


def test_net_copies_its_weights(sd, x):
    weights = {k: v.copy() for k, v in sd.items()}
    net = _native.Net(weights, kernel="ref")
    before = net.forward(x)
    for v in weights.values():
        v[...] = 0
    del weights
    gc.collect()
    np.testing.assert_array_equal(net.forward(x), before)


# ---- thread pool ----------------------------------------------------------------------------


def test_set_threads_errors_are_neonsign_errors():
    before = neonsign.get_threads()
    with pytest.raises(errors.NeonsignValueError, match="between 0 .* and 256, got 300"):
        neonsign.set_threads(300)
    with pytest.raises(errors.NeonsignValueError):
        neonsign.set_threads(-1)
    with pytest.raises(errors.NeonsignOverflowError):
        neonsign.set_threads(2**80)
    with pytest.raises(errors.NeonsignTypeError):
        neonsign.set_threads("4")
    with pytest.raises(errors.NeonsignTypeError):
        neonsign.set_threads(None)
    with pytest.raises(errors.NeonsignTypeError):
        neonsign.set_threads()
    assert neonsign.get_threads() == before
    assert neonsign.set_threads(n=before) == before


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "NEONSIGN_THREADS"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120
    )


@needs_subprocess
def test_bad_neonsign_threads_does_not_break_import():
    code = """
import neonsign
from neonsign import errors
print("imported", neonsign.__version__)
for call in (neonsign.get_threads, lambda: neonsign.set_threads(2)):
    try:
        call()
    except errors.ConfigError as exc:
        print("ConfigError:", exc)
"""
    run = _run(code, NEONSIGN_THREADS="abc")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"imported {neonsign.__version__}"
    assert len(lines) == 3, run.stdout
    for line in lines[1:]:
        assert line.startswith("ConfigError: NEONSIGN_THREADS must be an integer between 0")
        assert "and 256, got 'abc'" in line


@needs_subprocess
def test_bad_neonsign_threads_fails_the_first_threaded_call():
    code = """
import numpy as np
from neonsign import errors
from neonsign.engine import WEIGHT_SHAPES, Engine
eng = Engine({name: np.zeros(shape, np.float32) for name, shape in WEIGHT_SHAPES.items()})
try:
    eng.predict(np.zeros((1, 3, 32, 32), np.float32))
except errors.ConfigError as exc:
    print("ConfigError:", exc)
"""
    run = _run(code, NEONSIGN_THREADS="999")
    assert run.returncode == 0, run.stderr
    assert "ConfigError: NEONSIGN_THREADS must be an integer" in run.stdout
    assert "got '999'" in run.stdout


@needs_subprocess
def test_neonsign_threads_sizes_the_pool_when_first_used():
    run = _run("import neonsign; print(neonsign.get_threads())", NEONSIGN_THREADS="3")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "3"


# ---- errors from the core -------------------------------------------------------------------


def test_core_io_errors_are_neonsign_os_errors(tmp_path):
    missing = tmp_path / "missing.ppm"
    with pytest.raises(errors.NeonsignFileNotFoundError) as info:
        _native.ppm_read(missing, 100, 100)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(errors.NeonsignIsADirectoryError):
        _native.ppm_read(tmp_path, 100, 100)
    with pytest.raises(errors.NeonsignNotADirectoryError):
        _native.ppm_read(Path(__file__) / "x.ppm", 100, 100)


def test_conversion_errors_keep_the_cause():
    with pytest.raises(errors.NeonsignTypeError, match="path: expected str, bytes") as info:
        _native.ppm_read(3, 1, 1)
    assert type(info.value.__cause__) is TypeError
    with pytest.raises(errors.NeonsignValueError, match="null"):
        _native.ppm_read("a\0b", 1, 1)


# ---- facts and version ----------------------------------------------------------------------


def test_facts_are_exported_once():
    from neonsign import artifacts, backends, engine

    assert _native.KERNELS == ("ref", "neon", "avx2", "avx512")
    assert set(_native.available_kernels()) <= set(_native.KERNELS)
    assert _native.available_kernels()[0] == "ref"
    assert backends.NATIVE_KERNELS is _native.KERNELS
    assert engine.LAYERS is _native.LAYER_NAMES
    assert len(set(_native.LAYER_NAMES)) == len(_native.LAYER_NAMES) == 10
    assert engine.INPUT_SHAPE == _native.INPUT_SHAPE == (3, 32, 32)
    assert engine.NUM_CLASSES == artifacts.NUM_CLASSES == _native.NUM_CLASSES == 43
    assert list(engine.WEIGHT_SHAPES.items()) == list(_native.WEIGHT_SHAPES)
    assert list(artifacts.STATE_DICT_SHAPES.items()) == list(_native.WEIGHT_SHAPES)
    assert all(isinstance(d, int) for _, shape in _native.WEIGHT_SHAPES for d in shape)


@pytest.mark.torch
def test_facts_match_torch_traffic_sign_net():
    pytest.importorskip("torch")
    from neonsign.model import TrafficSignNet

    model = TrafficSignNet()
    torch_shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert torch_shapes == list(_native.WEIGHT_SHAPES)
    assert model.fc2.out_features == _native.NUM_CLASSES
    assert model.conv1.in_channels == _native.INPUT_SHAPE[0]
    import torch

    with torch.no_grad():
        out = model(torch.zeros(1, *_native.INPUT_SHAPE))
    assert tuple(out.shape) == (1, _native.NUM_CLASSES)


def test_version_is_written_once():
    assert neonsign.__version__ == _native.__version__
    try:
        installed = metadata.version("neonsign")
    except metadata.PackageNotFoundError:  # a bare copy on PYTHONPATH (tools/arm, tools/sanitize)
        installed = _native.__version__
    assert installed == _native.__version__
    meson = (Path(__file__).parents[1] / "meson.build").read_text()
    assert f"version: '{_native.__version__}'" in meson


@needs_subprocess
def test_cli_prints_the_version():
    script = Path(sys.executable).with_name("neonsign")
    if not script.exists():
        pytest.skip("the neonsign console script is not installed next to this interpreter")
    run = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"neonsign {_native.__version__}"


# ---- module state (multi-phase init) ----------------------------------------------------------


def test_a_second_module_instance_has_its_own_state(sd, x):
    spec = importlib.util.find_spec("neonsign._native")
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    assert other is not _native
    assert other.Net is not _native.Net and other.Recorder is not _native.Recorder
    before = _native.get_threads()
    assert other.set_threads(1) == 1
    assert _native.get_threads() == before  # its own pool
    np.testing.assert_array_equal(
        other.Net(sd, kernel="ref").forward(x), _native.Net(sd, kernel="ref").forward(x)
    )
    with pytest.raises(errors.NeonsignValueError):
        other.set_threads(300)
    del other
    gc.collect()  # frees the instance's pool
    assert _native.get_threads() == before


def test_recorder_subclass_and_span_cycles():
    class Sub(_native.Recorder):
        def __init__(self) -> None:
            super().__init__(capacity=4)
            self.tag = "sub"

    rec = Sub()
    with rec.span("outer"):
        rec.begin("inner")
        rec.end("inner")
    assert rec.names() == ["outer", "inner"] and rec.count == 2
    with pytest.raises(errors.NeonsignTypeError, match="span name must be str or int"):
        rec.begin(1.5)
    with pytest.raises(errors.NeonsignTypeError, match="unexpected keyword argument 'label'"):
        rec.add("a", 1, label="x")
    rec.cycle = rec.span("outer")  # a reference cycle through the span: collectable
    del rec
    gc.collect()


def test_uninitialised_recorder_subclass_is_an_error():
    class Lazy(_native.Recorder):
        def __init__(self) -> None:  # forgets super().__init__()
            pass

    with pytest.raises(RuntimeError, match="__init__ was not called"):
        Lazy().begin("a")


# ---- the stub ------------------------------------------------------------------------------


def _stub_names() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse(STUB.read_text())
    names: set[str] = set()
    members: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            members[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    return names, members


def test_stub_covers_every_public_name():
    stub, members = _stub_names()
    public = {n for n in dir(_native) if not n.startswith("_")} | {"__version__"}
    assert stub == public
    for cls in ("Net", "Recorder", "Span"):
        runtime = {n for n in vars(getattr(_native, cls)) if not n.startswith("_")}
        runtime |= {n for n in ("__enter__", "__exit__") if n in vars(getattr(_native, cls))}
        stubbed = members[cls] - {"__init__", "__new__"}
        assert stubbed == runtime, cls


@pytest.mark.parametrize("kernel", _native.available_kernels())
def test_net_names_its_tile_and_the_function_of_every_layer(sd, kernel) -> None:
    """Tile and ISA in kernel names; the stride specialisation chosen when the weights were
    packed (conv1 reads 3 channels per pixel, fc1 2304 inputs)."""
    net = _native.Net(sd, kernel)
    layers = net.layer_kernels
    assert list(layers) == list(_native.LAYER_NAMES)
    if kernel == "ref":
        assert net.tile == "scalar"
        assert layers["conv1"] == "ns_ref_conv3x3" and layers["fc2"] == "ns_ref_linear"
        return
    isa, _, shape = net.tile.partition("_")
    mr, _, nr = shape.partition("x")
    assert isa == kernel and int(mr) > 0 and int(nr) > 0
    assert all(fn is None or net.tile in fn for fn in layers.values()), layers
    assert layers["conv1"].endswith("_as3") and layers["fc1"].endswith("_as2304")
    assert layers["relu1"] is None and layers["flatten"] is None  # fused / free
    net.set_kernel("ref")
    assert net.tile == "scalar" and net.layer_kernels["fc1"] == "ns_ref_linear"
