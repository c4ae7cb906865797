"""Types of neonsign._native, the C extension (csrc/binding/). Private: the documented API is in
neonsign.preprocess, neonsign.engine and neonsign.profiler.

Every parameter is positional-or-keyword (the binding's one argument-parsing convention).
Errors a caller can cause are neonsign.errors classes (NeonsignTypeError for a wrong type or
arity, NeonsignValueError / ModelError / DecodeError / ResourceLimitError / UnsupportedError for
a bad value, NeonsignOSError subclasses for file errors, ConfigError for a bad
NEONSIGN_THREADS); MemoryError stays MemoryError.
"""

from collections.abc import Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, Final, Literal, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

__version__: Final[str]

# ---- facts shared with Python (from csrc/core/net.h and the kernel dispatcher) -------------
#: Every kernel name, available here or not: ("ref", "neon", "avx2", "avx512").
KERNELS: Final[tuple[str, ...]]
#: The per-layer timers' names, in execution order.
LAYER_NAMES: Final[tuple[str, ...]]
#: TrafficSignNet's state_dict entries (PyTorch names and shapes), in the engine's order.
WEIGHT_SHAPES: Final[tuple[tuple[str, tuple[int, ...]], ...]]
#: One input image: (channels, height, width).
INPUT_SHAPE: Final[tuple[int, int, int]]
#: Logits per image.
NUM_CLASSES: Final[int]

# ---- thread pool and build ------------------------------------------------------------------
def set_threads(n: int) -> int:
    """Resize the shared pool (0: one thread per CPU, at most 256); returns the new size."""

def get_threads() -> int:
    """Threads in the shared pool (created on first use from NEONSIGN_THREADS)."""

def cpu_count() -> int: ...
def build_info() -> dict[str, str | int]: ...

# ---- preprocessing --------------------------------------------------------------------------
LAYOUT_U8_NHWC: Final[int]
LAYOUT_F32_NCHW: Final[int]

def resize_simd() -> str: ...
def ppm_decode(data: Buffer, max_pixels: int) -> npt.NDArray[np.uint8]: ...
def png_unfilter(data: Buffer, width: int, height: int, channels: int) -> npt.NDArray[np.uint8]: ...
def ppm_read(
    path: str | bytes | PathLike[str] | PathLike[bytes], max_pixels: int, max_file_bytes: int
) -> npt.NDArray[np.uint8]: ...
def csv_parse(
    data: Buffer, source: str
) -> tuple[list[tuple[str, int, int, tuple[int, int, int, int], int | None]], bool]: ...
def csv_columns(
    data: Buffer, source: str, prefix: str
) -> tuple[list[str], npt.NDArray[np.int64], bool]: ...
def resize(
    image: npt.NDArray[np.uint8],
    height: int,
    width: int,
    roi: tuple[int, int, int, int] | None = None,
) -> npt.NDArray[np.uint8]: ...
def normalize(
    images: npt.NDArray[np.uint8], mean: Sequence[float], std: Sequence[float]
) -> npt.NDArray[np.float32]: ...
def augment(
    images: npt.NDArray[np.uint8],
    theta: npt.NDArray[np.float32],
    bright: npt.NDArray[np.float32],
    contrast: npt.NDArray[np.float32],
    mean: Sequence[float],
    std: Sequence[float],
) -> npt.NDArray[np.float32]: ...
def trainops_kernels() -> tuple[str, ...]: ...
def pool2_relu(
    x: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    y: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    arg: npt.NDArray[np.uint8],
    nchw: bool = False,
    kernel: str | None = None,
    dropout: float = 0.0,
    seed: int = 0,
) -> None: ...
def dropout_keep(
    seed: int, p: float, n: int, kernel: str | None = None
) -> npt.NDArray[np.uint8]: ...
def pool2_relu_backward(
    grad_y: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    arg: npt.NDArray[np.uint8],
    grad_x: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    nchw: bool = False,
    kernel: str | None = None,
) -> None: ...
def load_images(
    paths: Sequence[str | bytes | PathLike[str] | PathLike[bytes]],
    rois: npt.NDArray[np.int64] | None,
    height: int,
    width: int,
    layout: int,
    mean: Sequence[float],
    std: Sequence[float],
    max_pixels: int,
    max_file_bytes: int,
    skip_bad: bool,
    threads: int | None,
    keep_uint8: bool = False,
    out: npt.NDArray[np.float32] | npt.NDArray[np.uint8] | None = None,
    out_uint8: npt.NDArray[np.uint8] | None = None,
    digest_prefix: Buffer | None = None,
    digest_suffix: Buffer | None = None,
) -> tuple[
    npt.NDArray[np.float32] | npt.NDArray[np.uint8],
    npt.NDArray[np.bool_],
    list[tuple[int, str]],
    npt.NDArray[np.uint8] | None,
    bytes | None,
]: ...
def sha256_accelerated() -> bool: ...

# ---- profiler -------------------------------------------------------------------------------
def prof_now_ns() -> int: ...
def prof_cycles() -> int: ...
def prof_cycles_hz() -> float: ...

@final
class Span:
    """A span of a Recorder as a context manager (made by Recorder.span; not instantiable)."""

    def __enter__(self) -> Span: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> Literal[False]: ...

class Recorder:
    """Nested named spans timed in C (monotonic ns clock and CPU cycle counter)."""

    def __init__(self, capacity: int = 0, enabled: bool = True) -> None: ...
    @property
    def enabled(self) -> bool: ...
    @enabled.setter
    def enabled(self, value: bool) -> None: ...
    @property
    def count(self) -> int: ...
    @property
    def open_spans(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    def intern(self, name: str | int) -> int: ...
    def begin(self, name: str | int) -> None: ...
    def end(self, name: str | int | None = None) -> None: ...
    def span(self, name: str | int) -> Span: ...
    def add(
        self,
        name: str | int,
        duration_ns: int,
        calls: int = 1,
        parent: int = -1,
        start_ns: int = 0,
    ) -> None: ...
    def reset(self) -> None: ...
    def names(self) -> list[str]: ...
    def records(self) -> dict[str, npt.NDArray[np.generic]]: ...

# ---- engine ---------------------------------------------------------------------------------
@final
class Net:
    """TrafficSignNet on the native engine: weights copied and packed for one kernel."""

    def __new__(
        cls, weights: Mapping[str, npt.NDArray[np.float32]], kernel: str | None = None
    ) -> Net: ...
    @property
    def kernel(self) -> str: ...
    @property
    def tile(self) -> str: ...
    @property
    def layer_kernels(self) -> dict[str, str | None]: ...
    @property
    def timers_enabled(self) -> bool: ...
    def forward(
        self, x: npt.NDArray[np.float32], threads: int | None = None
    ) -> npt.NDArray[np.float32]: ...
    def set_kernel(self, name: str | None) -> str: ...
    def enable_timers(self, on: bool = True) -> None: ...
    def timers(self) -> dict[str, tuple[int, int]]: ...
    def reset_timers(self) -> None: ...

class QNet:
    """TrafficSignNet in int8 (csrc/core/int8_net.h): parameters from neonsign.quantize."""

    def __new__(cls, params: Mapping[str, npt.NDArray[Any]], kernel: str | None = None) -> QNet: ...
    @property
    def kernel(self) -> str: ...
    @property
    def tile(self) -> str: ...
    @property
    def layer_kernels(self) -> dict[str, str | None]: ...
    @property
    def timers_enabled(self) -> bool: ...
    def forward(
        self, x: npt.NDArray[np.float32], threads: int | None = None
    ) -> npt.NDArray[np.float32]: ...
    def set_kernel(self, name: str | None) -> str: ...
    def enable_timers(self, on: bool = True) -> None: ...
    def timers(self) -> dict[str, tuple[int, int]]: ...
    def reset_timers(self) -> None: ...

INT8_KERNELS: tuple[str, ...]

def available_int8_kernels() -> list[str]: ...
def qkernel_conv3x3(
    kernel: str,
    x: npt.NDArray[np.uint8],
    weight: npt.NDArray[np.int8],
    bias: npt.NDArray[np.int32],
    mult: npt.NDArray[np.int32],
    shift: npt.NDArray[np.int32],
    pool: bool = False,
) -> npt.NDArray[np.uint8]: ...
def qkernel_linear(
    kernel: str,
    x: npt.NDArray[np.uint8],
    weight: npt.NDArray[np.int8],
    bias: npt.NDArray[np.int32],
    mult: npt.NDArray[np.int32] | None = None,
    shift: npt.NDArray[np.int32] | None = None,
    scale: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[Any]: ...
def available_kernels() -> list[str]: ...
def resolve_kernel(name: str | None = None) -> str: ...
def cpu_ghz() -> float: ...
def kernel_conv3x3(
    kernel: str,
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    relu: bool = True,
    pool: bool = False,
) -> npt.NDArray[np.float32]: ...
def kernel_linear(
    kernel: str,
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    relu: bool = False,
) -> npt.NDArray[np.float32]: ...
