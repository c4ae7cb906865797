"""From uploaded bytes to predictions: decode, prepare, classify, and coalescing of concurrent
single-image requests into one engine call.

Nothing here knows about HTTP: :class:`Inference` takes bytes and a :class:`LoadedModel` and
returns :class:`Prediction` dicts or raises the library's errors (``DecodeError``,
``UnsupportedError``, ``ResourceLimitError``...), which the routes map to status codes. Tests
construct it directly; the app builds one per process.

Concurrency: decoding, preprocessing and inference run in a thread pool (the C engine and
Pillow release the GIL), so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypedDict, TypeVar

import numpy as np
from numpy.typing import NDArray

from ... import images
from ..._math import softmax
from ...data import CLASS_NAMES
from ...images import RoiError, check_roi, parse_roi, roi_from_values
from ...preprocess import Roi
from .models import LoadedModel

__all__ = [
    "Coalescer",
    "Inference",
    "InferenceObserver",
    "Prediction",
    "Prepared",
    "RoiError",
    "TopClass",
    "Upload",
    "check_roi",
    "decode_image",
    "parse_roi",
    "parse_rois",
    "prediction",
    "prepare",
]

T = TypeVar("T")
R = TypeVar("R")


# ---------------------------------------------------------------------------------------------
# Regions of interest sent with an upload


def _roi_entry(entry: object, index: int) -> Roi | None:
    """One entry of the ``rois`` list: ``[x1, y1, x2, y2]`` or null."""
    if entry is None:
        return None
    if (
        not isinstance(entry, list)
        or len(entry) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry)
    ):
        raise RoiError(
            f"rois[{index}]: expected [x1, y1, x2, y2] (four integers) or null, "
            f"got {json.dumps(entry)[:100]}"
        )
    return roi_from_values(entry, f"rois[{index}]")


def parse_rois(text: str | None, n: int) -> list[Roi | None]:
    """The ROI form field of ``/predict/batch``: a JSON list with one entry per file, in the
    files' order, each ``[x1, y1, x2, y2]`` or null (that file whole). Absent or blank: every
    file whole.

    Raises:
        RoiError: not a JSON list of ``n`` such entries.
    """
    if text is None or not text.strip():
        return [None] * n
    try:
        entries = json.loads(text)
    except ValueError:
        entries = None
    if not isinstance(entries, list) or len(entries) != n:
        raise RoiError(
            f"rois: expected a JSON list of {n} entries, one per file ([x1, y1, x2, y2] or "
            f"null), got {text[:100]!r}"
        )
    return [_roi_entry(entry, i) for i, entry in enumerate(entries)]


# ---------------------------------------------------------------------------------------------
# Pure steps


def decode_image(data: bytes, max_pixels: int) -> tuple[NDArray[np.uint8], str]:
    """Decode PNG, JPEG or PPM bytes of any mode to ``uint8 (H, W, 3)`` RGB with the library's
    one decoder (:func:`neonsign.images.decode`: 16-bit scaled, transparency on white).

    The pixel count is checked from the header before decoding (decompression bombs).

    Returns:
        (image, format name ``"PNG"``, ``"JPEG"`` or ``"PPM"``).
    Raises:
        UnsupportedError: not a PNG, JPEG or PPM.
        DecodeError: corrupt or truncated.
        ResourceLimitError: more than ``max_pixels`` pixels.
    """
    image, fmt = images.decode(data, max_pixels=max_pixels, source="upload")
    return image, fmt


@dataclass(frozen=True)
class Prepared:
    """One decoded and preprocessed upload.

    Attributes:
        x: float32 ``(3, H, W)``, normalised for the model.
        fmt: ``"PNG"``, ``"JPEG"`` or ``"PPM"``.
        width, height: of the upload, before resizing.
        brightness: mean of the resized image, 0..1 (an input-drift signal).
    """

    x: NDArray[np.float32]
    fmt: str
    width: int
    height: int
    brightness: float


def prepare(data: bytes, model: LoadedModel, max_pixels: int, roi: Roi | None = None) -> Prepared:
    """Decode ``data`` and preprocess it as ``model``'s card says (size, mean, std) with the
    library's one preparation path (:func:`neonsign.images.prepare_image`, the one of
    ``neonsign predict`` and of ``neonsign test``'s loader): crop to ``roi`` if given, else
    resize the whole image.

    Raises:
        RoiError: ``roi`` does not fit the decoded image.
        and the errors of :func:`decode_image`.
    """
    image, fmt = decode_image(data, max_pixels)
    height, width = int(image.shape[0]), int(image.shape[1])
    if roi is not None:
        check_roi(roi, width, height)
    preprocessing = {"size": model.size, "mean": model.mean, "std": model.std}
    p = images.prepare_image(image, preprocessing, roi, source="upload")
    return Prepared(p.x, fmt, width, height, float(p.small.mean()) / 255.0)


class TopClass(TypedDict):
    """One entry of a prediction's ``top5``."""

    class_id: int
    label: str
    probability: float


class Prediction(TypedDict):
    """What ``/predict`` answers for one image."""

    predicted_class: int
    label: str
    probability: float
    top5: list[TopClass]
    model_version: str


def prediction(probs: NDArray[np.float32], version: str) -> Prediction:
    """The top-1 and top-5 of one row of class probabilities (ties: lower class id first)."""
    order = np.argsort(-probs, kind="stable")[:5]
    top5: list[TopClass] = [
        {"class_id": int(c), "label": CLASS_NAMES[int(c)], "probability": float(probs[c])}
        for c in order
    ]
    return {
        "predicted_class": top5[0]["class_id"],
        "label": top5[0]["label"],
        "probability": top5[0]["probability"],
        "top5": top5,
        "model_version": version,
    }


# ---------------------------------------------------------------------------------------------
# Coalescing


class Coalescer(Generic[T, R]):
    """Micro-batching without a waiting window: a request starts work at once if fewer than
    ``max_running`` jobs run; otherwise it queues, and the next job takes everything queued
    (up to ``max_items``) in one executor call. Under load this turns many thread hand-offs
    (each a GIL round trip for the event loop) and engine calls into one; when idle it adds
    no latency.

    ``work(items) -> results`` runs in ``executor`` and returns one result per item, in order;
    a result that is an exception is raised to its own caller only. If ``work`` itself
    raises, every caller of that job gets the exception. Use from one event loop.
    """

    def __init__(
        self,
        executor: Executor,
        work: Callable[[list[T]], Sequence[R | BaseException]],
        max_items: int,
        max_running: int,
    ) -> None:
        self.executor, self.work = executor, work
        self.max_items, self.max_running = max_items, max_running
        self.pending: list[tuple[T, asyncio.Future[R | BaseException]]] = []
        self.running = 0

    async def submit(self, item: T) -> R:
        """Queue ``item``; return its result or raise its error."""
        fut: asyncio.Future[R | BaseException] = asyncio.get_running_loop().create_future()
        self.pending.append((item, fut))
        self._start()
        result = await fut
        if isinstance(result, BaseException):
            raise result
        return result

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending and self.running < self.max_running:
            batch, self.pending = self.pending[: self.max_items], self.pending[self.max_items :]
            self.running += 1
            job = loop.run_in_executor(self.executor, self.work, [item for item, _ in batch])
            job.add_done_callback(functools.partial(self._finish, batch=batch))

    def _finish(
        self,
        job: asyncio.Future[Sequence[R | BaseException]],
        batch: list[tuple[T, asyncio.Future[R | BaseException]]],
    ) -> None:
        self.running -= 1
        results: Sequence[R | BaseException]
        try:
            results = job.result()
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            results = [exc] * len(batch)
        for (_, fut), res in zip(batch, results, strict=False):
            if not fut.done():  # the caller may have gone (client disconnected)
                fut.set_result(res)
        if self.pending:
            self._start()


# ---------------------------------------------------------------------------------------------
# The inference service


class Upload(NamedTuple):
    """One single-image request waiting to be coalesced: its bytes, the model it reads and its
    optional ROI."""

    data: bytes
    model: LoadedModel
    roi: Roi | None = None


class InferenceObserver(Protocol):
    """What :class:`Inference` reports as it works (the Prometheus metrics implement it)."""

    def upload(self, nbytes: int) -> None:
        """An upload of ``nbytes`` is about to be decoded."""

    def prepared(self, image: Prepared, seconds: float) -> None:
        """An upload was decoded and preprocessed in ``seconds``."""

    def engine_call(self, images: int, seconds: float) -> None:
        """One engine call classified ``images`` images in ``seconds``."""

    def predicted(self, prediction: Prediction) -> None:
        """One prediction was made."""


class _Unobserved:
    """An :class:`InferenceObserver` that records nothing."""

    def upload(self, nbytes: int) -> None:
        pass

    def prepared(self, image: Prepared, seconds: float) -> None:
        pass

    def engine_call(self, images: int, seconds: float) -> None:
        pass

    def predicted(self, prediction: Prediction) -> None:
        pass


class Inference:
    """Decode, prepare and classify uploads in a thread pool, coalescing concurrent
    single-image requests into one engine call per model.

    Args:
        max_pixels: largest ``width * height`` decoded (``ResourceLimitError`` beyond).
        max_batch: most single-image requests taken into one engine call.
        threads: worker threads, and most coalesced jobs running at once (None: CPU count).
        observer: told about every upload, preprocessing and engine call (metrics).

    Each request passes the :class:`LoadedModel` it reads once, so a reload in between never
    mixes two models in one answer. Errors are the library's (``DecodeError``,
    ``UnsupportedError``, ``ResourceLimitError``...), raised to the request that caused them.
    """

    def __init__(
        self,
        *,
        max_pixels: int,
        max_batch: int,
        threads: int | None = None,
        observer: InferenceObserver | None = None,
    ) -> None:
        workers = threads or os.cpu_count() or 1
        self.max_pixels = max_pixels
        self.observer: InferenceObserver = observer or _Unobserved()
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neonsign-serve")
        self.coalescer: Coalescer[Upload, Prediction] = Coalescer(
            self.executor, self.run_coalesced, max_items=max_batch, max_running=workers
        )

    # ---- worker-thread steps ----------------------------------------------------------------
    def prepare(self, data: bytes, model: LoadedModel, roi: Roi | None = None) -> Prepared:
        """Decode and preprocess one upload for ``model``, cropped to ``roi`` if given."""
        t0 = time.perf_counter()
        self.observer.upload(len(data))
        p = prepare(data, model, self.max_pixels, roi)
        self.observer.prepared(p, time.perf_counter() - t0)
        return p

    def classify(self, prepared: Sequence[Prepared], model: LoadedModel) -> list[Prediction]:
        """One engine call for the prepared images, then their predictions."""
        x = np.stack([p.x for p in prepared])
        t0 = time.perf_counter()
        logits = model.engine.predict(x)
        self.observer.engine_call(len(prepared), time.perf_counter() - t0)
        out = []
        for row in softmax(logits):
            pred = prediction(row, model.version)
            self.observer.predicted(pred)
            out.append(pred)
        return out

    def run_batch(
        self,
        blobs: Sequence[bytes],
        model: LoadedModel,
        rois: Sequence[Roi | None] | None = None,
    ) -> list[Prediction]:
        """A batch request: all images in one engine call; any bad image fails it. ``rois``:
        one optional ROI per blob (None: all whole)."""
        crops = list(rois) if rois is not None else [None] * len(blobs)
        prepared = [self.prepare(d, model, r) for d, r in zip(blobs, crops, strict=True)]
        return self.classify(prepared, model)

    def run_coalesced(self, items: Sequence[Upload]) -> list[Prediction | BaseException]:
        """Independent single-image requests that queued up together. Each gets its
        prediction or its own error; one engine call per model among them."""
        results: dict[int, Prediction | BaseException] = {}
        groups: dict[int, list[tuple[int, Prepared]]] = {}
        for i, item in enumerate(items):
            data, model, roi = Upload(*item)  # a plain (data, model) tuple is a whole image
            try:
                prepared = self.prepare(data, model, roi)
            except Exception as exc:  # noqa: BLE001 - this request's own error
                results[i] = exc
                continue
            groups.setdefault(id(model), []).append((i, prepared))
        for group in groups.values():
            model = items[group[0][0]][1]
            preds: Sequence[Prediction | BaseException]
            try:
                preds = self.classify([p for _, p in group], model)
            except Exception as exc:  # noqa: BLE001 - every request of the group gets it
                preds = [exc] * len(group)
            for (i, _), pred in zip(group, preds, strict=True):
                results[i] = pred
        return [results[i] for i in range(len(items))]

    # ---- event-loop API ---------------------------------------------------------------------
    async def predict_one(
        self, data: bytes, model: LoadedModel, roi: Roi | None = None
    ) -> Prediction:
        """Classify one upload (cropped to ``roi`` if given); coalesced with whatever other
        requests are queued."""
        return await self.coalescer.submit(Upload(data, model, roi))

    async def predict_batch(
        self,
        blobs: Sequence[bytes],
        model: LoadedModel,
        rois: Sequence[Roi | None] | None = None,
    ) -> list[Prediction]:
        """Classify several uploads in one engine call, in order (one upload: as
        :meth:`predict_one`); ``rois`` as in :meth:`run_batch`."""
        if rois is not None and len(rois) != len(blobs):
            raise RoiError(f"{len(rois)} ROIs for {len(blobs)} images")
        if len(blobs) == 1:
            return [await self.predict_one(blobs[0], model, rois[0] if rois else None)]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run_batch, blobs, model, rois)

    def close(self) -> None:
        """Stop the worker threads; queued work is cancelled."""
        self.executor.shutdown(wait=False, cancel_futures=True)
