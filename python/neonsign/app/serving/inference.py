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
import threading
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
from ...errors import NeonsignError, ResourceLimitError, UnsupportedError
from ...images import RoiError, check_roi, parse_roi, roi_from_values
from ...preprocess import Roi
from .models import LoadedModel

__all__ = [
    "Busy",
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


def _in_batch(exc: NeonsignError, index: int, count: int) -> NeonsignError:
    """``exc`` (same type, so the same HTTP status) with the image's position in its batch."""
    return type(exc)(f"image {index + 1} of {count}: {exc}")


class Busy(NeonsignError):
    """A queue of the inference service is full: the request is refused at once (503
    ``busy``) instead of waiting behind work it cannot overtake."""


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


def decode_image(
    data: bytes, max_pixels: int, reduce_above: int | None = None
) -> tuple[NDArray[np.uint8], str]:
    """Decode PNG, JPEG or PPM bytes of any mode to ``uint8 (H, W, 3)`` RGB with the library's
    one decoder (:func:`neonsign.images.decode`: 16-bit scaled, transparency on white).

    The pixel count is checked from the header before decoding (decompression bombs). A JPEG
    of more than ``reduce_above`` pixels is decoded at a reduced DCT scale
    (:func:`neonsign.images.decode`).

    Returns:
        (image, format name ``"PNG"``, ``"JPEG"`` or ``"PPM"``).
    Raises:
        UnsupportedError: not a PNG, JPEG or PPM.
        DecodeError: corrupt or truncated.
        ResourceLimitError: more than ``max_pixels`` pixels.
    """
    image, fmt = images.decode(
        data, max_pixels=max_pixels, source="upload", reduce_above=reduce_above
    )
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


def prepare(
    data: bytes,
    model: LoadedModel,
    max_pixels: int,
    roi: Roi | None = None,
    reduce_above: int | None = None,
) -> Prepared:
    """Decode ``data`` and preprocess it as ``model``'s card says (size, mean, std) with the
    library's one preparation path (:func:`neonsign.images.prepare_image`, the one of
    ``neonsign predict`` and of ``neonsign test``'s loader): crop to ``roi`` if given, else
    resize the whole image. A whole (uncropped) JPEG of more than ``reduce_above`` pixels is
    decoded at a reduced scale first (a ROI's corners are in full-size pixels, so a cropped
    one never is).

    Raises:
        RoiError: ``roi`` does not fit the decoded image.
        and the errors of :func:`decode_image`.
    """
    image, fmt = decode_image(data, max_pixels, None if roi is not None else reduce_above)
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

    ``executor`` None runs each job on the event loop itself, as a callback scheduled right
    after the submitting coroutine yields: the requests whose bodies arrived in the same loop
    iteration share one job, with no thread hand-off (for work small enough to run inline).
    ``max_pending`` bounds the queue: beyond it :meth:`submit` raises :class:`Busy`.
    """

    def __init__(
        self,
        executor: Executor | None,
        work: Callable[[list[T]], Sequence[R | BaseException]],
        max_items: int,
        max_running: int,
        max_pending: int | None = None,
    ) -> None:
        self.executor, self.work = executor, work
        self.max_items, self.max_running = max_items, max_running
        self.max_pending = max_pending
        self.pending: list[tuple[T, asyncio.Future[R | BaseException]]] = []
        self.running = 0

    @property
    def saturated(self) -> bool:
        """The queue is at ``max_pending``: new items are refused."""
        return self.max_pending is not None and len(self.pending) >= self.max_pending

    async def submit(self, item: T) -> R:
        """Queue ``item``; return its result or raise its error.

        Raises:
            Busy: ``max_pending`` items are already queued.
        """
        if self.saturated:
            raise Busy(f"{len(self.pending)} requests already queued; try again shortly")
        fut: asyncio.Future[R | BaseException] = asyncio.get_running_loop().create_future()
        self.pending.append((item, fut))
        self._start()
        result = await fut
        if isinstance(result, BaseException):
            raise result
        return result

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.executor is None:  # inline: one flush at a time, taking what queued by then
            if self.pending and not self.running:
                self.running = 1
                loop.call_soon(self._flush_inline)
            return
        while self.pending and self.running < self.max_running:
            batch, self.pending = self.pending[: self.max_items], self.pending[self.max_items :]
            self.running += 1
            job = loop.run_in_executor(self.executor, self.work, [item for item, _ in batch])
            job.add_done_callback(functools.partial(self._finish, batch=batch))

    def _flush_inline(self) -> None:
        """Run one job on the event loop with everything queued (up to ``max_items``)."""
        batch, self.pending = self.pending[: self.max_items], self.pending[self.max_items :]
        results: Sequence[R | BaseException]
        try:
            results = self.work([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            results = [exc] * len(batch)
        self.running = 0
        self._settle(batch, results)

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
        self._settle(batch, results)

    def _settle(
        self,
        batch: list[tuple[T, asyncio.Future[R | BaseException]]],
        results: Sequence[R | BaseException],
    ) -> None:
        """Hand each caller its result, then start the next job if anything is queued."""
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
    """Decode, prepare and classify uploads, coalescing concurrent single-image requests into
    one engine call per model, in three lanes so that cheap requests never wait behind costly
    ones:

    * **inline** (``inline_pixels`` > 0): a single image whose header declares at most
      ``inline_pixels`` pixels (a GTSRB-size sign decodes in ~0.1 ms) is prepared and classified
      on the event loop, coalesced with the others that arrived in the same loop iteration: no
      thread hand-off, which costs more than the work itself;
    * **pooled**: larger single images, coalesced in a pool of ``threads`` threads;
    * **batch**: ``/predict/batch`` uploads of several images, in their own pool of
      ``batch_threads`` threads, at most ``batch_queue`` admitted at once (:class:`Busy`
      beyond), each within ``max_batch_pixels`` declared pixels in total (checked from the
      headers before anything is decoded), so batches never take the decode capacity single
      requests need.

    Args:
        max_pixels: largest ``width * height`` decoded (``ResourceLimitError`` beyond).
        max_batch: most single-image requests taken into one engine call.
        threads: pooled-lane threads, and most coalesced jobs running at once (None: CPU count).
        observer: told about every upload, preprocessing and engine call (metrics).
        inline_pixels: largest declared size prepared on the event loop (0: none).
        max_queue: most single-image requests waiting in a lane (None: unbounded).
        batch_threads, batch_queue: the batch lane's threads and admitted batches.
        max_batch_pixels: declared pixels of one batch request, all images together (None: no
            budget beyond ``max_pixels`` per image).
        reduce_above: whole JPEGs of more pixels are decoded at a reduced DCT scale (None: never).

    Each request passes the :class:`LoadedModel` it reads once, so a reload in between never
    mixes two models in one answer. Errors are the library's (``DecodeError``,
    ``UnsupportedError``, ``ResourceLimitError``...) or :class:`Busy`, raised to the request
    that caused them.
    """

    def __init__(
        self,
        *,
        max_pixels: int,
        max_batch: int,
        threads: int | None = None,
        observer: InferenceObserver | None = None,
        inline_pixels: int = 0,
        max_queue: int | None = None,
        batch_threads: int = 1,
        batch_queue: int | None = None,
        max_batch_pixels: int | None = None,
        reduce_above: int | None = None,
    ) -> None:
        workers = threads or os.cpu_count() or 1
        self.max_pixels, self.inline_pixels = max_pixels, inline_pixels
        self.max_batch_pixels, self.reduce_above = max_batch_pixels, reduce_above
        self.batch_queue, self.batches = batch_queue, 0
        self._batch_lock = threading.Lock()
        self.observer: InferenceObserver = observer or _Unobserved()
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neonsign-serve")
        self.batch_executor = ThreadPoolExecutor(
            max_workers=batch_threads, thread_name_prefix="neonsign-batch"
        )
        self.coalescer: Coalescer[Upload, Prediction] = Coalescer(
            self.executor, self.run_coalesced, max_batch, workers, max_queue
        )
        self.inline: Coalescer[Upload, Prediction] = Coalescer(
            None, self.run_coalesced, min(max_batch, 32), 1, max_queue
        )

    def saturation(self) -> str | None:
        """Why new requests would be refused right now (None: they are admitted)."""
        if self.inline.saturated or self.coalescer.saturated:
            return "the single-image request queue is full"
        if self.batch_queue is not None and self.batches >= self.batch_queue:
            return f"{self.batches} batch requests are being processed (the most admitted)"
        return None

    def _inline_size(self, data: bytes) -> bool:
        """Whether ``data`` is small enough for the inline lane: its header declares at most
        ``inline_pixels`` pixels. A header :func:`neonsign.images.probe` cannot read goes to
        the pooled lane, where the decoder gives the answer (or the error) off the loop."""
        if self.inline_pixels <= 0:
            return False
        try:
            _, width, height = images.probe(data)
        except NeonsignError:
            return False
        return width * height <= self.inline_pixels

    def check_batch_budget(self, blobs: Sequence[bytes]) -> None:
        """Refuse a batch whose headers declare more than ``max_batch_pixels`` pixels in all
        (before any of it is decoded). An image whose header :func:`neonsign.images.probe`
        cannot read counts as ``max_pixels`` (the most its decoder may decode); the decoder
        then reports what is wrong with it. A file that is no PNG, JPEG or PPM at all is refused
        as such, named by its position.

        Raises:
            ResourceLimitError: over the budget.
            UnsupportedError: an image of an unsupported format.
        """
        if self.max_batch_pixels is None:
            return
        total = 0
        for i, blob in enumerate(blobs):
            try:
                _, width, height = images.probe(blob)
            except UnsupportedError as exc:  # never decodable: say so rather than count it
                raise _in_batch(exc, i, len(blobs)) from exc
            except NeonsignError:
                width, height = self.max_pixels, 1
            total += width * height
        if total > self.max_batch_pixels:
            raise ResourceLimitError(
                f"the {len(blobs)} images of this batch declare {total} pixels in all, over the "
                f"batch budget of {self.max_batch_pixels}; send fewer or smaller images"
            )

    # ---- worker-thread steps ----------------------------------------------------------------
    def prepare(self, data: bytes, model: LoadedModel, roi: Roi | None = None) -> Prepared:
        """Decode and preprocess one upload for ``model``, cropped to ``roi`` if given."""
        t0 = time.perf_counter()
        self.observer.upload(len(data))
        p = prepare(data, model, self.max_pixels, roi, self.reduce_above)
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
        """A batch request: all images in one engine call; any bad image fails it, its error
        naming its position (``image 2 of 5: ...``). ``rois``: one optional ROI per blob (None:
        all whole)."""
        crops = list(rois) if rois is not None else [None] * len(blobs)
        prepared = []
        for i, (data, roi) in enumerate(zip(blobs, crops, strict=True)):
            try:
                prepared.append(self.prepare(data, model, roi))
            except NeonsignError as exc:  # the client needs to know which of its files
                raise _in_batch(exc, i, len(blobs)) from exc
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
        """Classify one upload (cropped to ``roi`` if given), in the inline lane if it is small
        enough, else the pooled one; coalesced with whatever else is queued there."""
        lane = self.inline if self._inline_size(data) else self.coalescer
        return await lane.submit(Upload(data, model, roi))

    async def predict_batch(
        self,
        blobs: Sequence[bytes],
        model: LoadedModel,
        rois: Sequence[Roi | None] | None = None,
    ) -> list[Prediction]:
        """Classify several uploads in one engine call, in order (one upload: as
        :meth:`predict_one`), in the batch lane; ``rois`` as in :meth:`run_batch`.

        Raises:
            Busy: ``batch_queue`` batches are already admitted.
            ResourceLimitError: over the batch pixel budget.
        """
        if rois is not None and len(rois) != len(blobs):
            raise RoiError(f"{len(rois)} ROIs for {len(blobs)} images")
        if len(blobs) == 1:
            return [await self.predict_one(blobs[0], model, rois[0] if rois else None)]
        if self.batch_queue is not None and self.batches >= self.batch_queue:
            raise Busy(f"{self.batches} batch requests are being processed; try again shortly")
        self.check_batch_budget(blobs)
        job = self.batch_executor.submit(self.run_batch, blobs, model, rois)
        with self._batch_lock:  # counted until the work itself ends, even if the client leaves
            self.batches += 1
        job.add_done_callback(self._batch_done)
        return await asyncio.wrap_future(job)

    def _batch_done(self, _job: object) -> None:
        with self._batch_lock:
            self.batches -= 1

    def close(self) -> None:
        """Stop the worker threads; queued work is cancelled."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.batch_executor.shutdown(wait=False, cancel_futures=True)
