"""Download and extract the official GTSRB archives (standard library only).

* streaming with :mod:`urllib` into ``<archive>.part`` beside the destination, resumed with an
  HTTP ``Range`` request when a ``.part`` is already there (also retried within one call);
* md5 check against the published sums: on mismatch :class:`~neonsign.errors.ChecksumError`
  (expected vs got) and the ``.part`` is deleted, since resuming it cannot repair it; an
  interrupted transfer keeps the ``.part`` so the next call resumes it;
* atomic, zip-slip-safe extraction: each archive is extracted into a temporary folder beside the
  destination, checked, then renamed into place, so a half-extracted data set never appears;
* an extracted data set is never overwritten unless ``force=True``.

The archives extract to the layout :func:`neonsign.data.find_split` calls ``official-fixed``::

    root/GTSRB/Training/000NN/...             GTSRB-Training_fixed.zip
    root/GTSRB/Final_Test/Images/NNNNN.ppm    GTSRB_Final_Test_Images.zip
    root/GT-final_test.csv                    GTSRB_Final_Test_GT.zip
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ChecksumError, DownloadError, NeonsignValueError, file_errors

__all__ = ["DEFAULT_BASE_URL", "ARCHIVES", "SPLIT_ARCHIVES", "Archive", "download", "fetch"]

DEFAULT_BASE_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Archive:
    """One published archive: its file name, md5 and the path it extracts (relative to root)."""

    filename: str
    md5: str
    provides: str


ARCHIVES: dict[str, Archive] = {
    "train": Archive(
        "GTSRB-Training_fixed.zip", "513f3c79a4c5141765e10e952eaa2478", "GTSRB/Training"
    ),
    "test_images": Archive(
        "GTSRB_Final_Test_Images.zip", "c7e4e6327067d32654124b0fe9e82185", "GTSRB/Final_Test"
    ),
    "test_labels": Archive(
        "GTSRB_Final_Test_GT.zip", "fe31e9c9270bbcd7b84b7f21a9d9d9e5", "GT-final_test.csv"
    ),
}
SPLIT_ARCHIVES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "test": ("test_images", "test_labels"),
    "all": ("train", "test_images", "test_labels"),
}


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content_range_start(value: str | None) -> int | None:
    """Start offset of a ``Content-Range: bytes START-END/TOTAL`` header."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _transfer(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its current size). Raises DownloadError
    for HTTP/network errors and for a body shorter than announced (``part`` is kept)."""
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "neonsign"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the .part is complete (md5 decides)
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot connect: {reason}") from None
    with response:
        if have and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                raise DownloadError(
                    f"{url}: asked to resume at byte {have}, server sent Content-Range "
                    f"{response.headers.get('Content-Range')!r}"
                )
            mode = "ab"
        else:  # 200: the server ignored Range (or there was nothing to resume): start over
            have, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None and length.isdigit() else None
        got = have
        with (
            open(part, mode) as out,
            tqdm(
                total=expected,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (OSError, ValueError) as exc:  # reset, timeout, http.client.IncompleteRead
                raise DownloadError(
                    f"{url}: transfer interrupted after {got} bytes ({exc}); run again to resume "
                    f"from {part}"
                ) from None
    if expected is not None and got < expected:
        raise DownloadError(
            f"{url}: transfer interrupted after {got} of {expected} bytes; run again to resume "
            f"from {part}"
        )


def fetch(
    url: str,
    dest: Path,
    md5: str | None,
    *,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` with resume and an md5 check.

    An existing ``dest`` whose md5 matches is reused. Interrupted transfers are resumed up to
    ``retries`` times within this call; after that the ``.part`` stays for the next call.

    Raises:
        DownloadError: HTTP error, network error, or the transfer kept being interrupted.
        ChecksumError: the complete file's md5 is not ``md5`` (the ``.part`` is deleted).
    """
    dest = Path(dest)
    if dest.exists() and (md5 is None or _md5(dest) == md5):
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, progress=progress, timeout=timeout)
            break
        except DownloadError:
            if attempt == retries or not part.exists() or part.stat().st_size == 0:
                raise
            time.sleep(min(float(attempt), 5.0))  # resume at once, then back off a little
    got = _md5(part)
    if md5 is not None and got != md5.lower():
        part.unlink()
        raise ChecksumError(
            f"{url}: md5 mismatch: expected {md5}, got {got}; deleted the download, run again"
        )
    os.replace(part, dest)
    return dest


def _safe_members(archive: zipfile.ZipFile, zip_path: Path) -> list[zipfile.ZipInfo]:
    """Refuse absolute paths, ``..``, drive letters and symlinks (zip-slip)."""
    members = archive.infolist()
    for info in members:
        name = PurePosixPath(info.filename.replace("\\", "/"))
        mode = info.external_attr >> 16
        if name.is_absolute() or ".." in name.parts or ":" in info.filename or stat.S_ISLNK(mode):
            raise DownloadError(
                f"{zip_path}: unsafe member {info.filename!r} (refusing to extract)"
            )
    return members


def _extract(zip_path: Path, root: Path, provides: str, force: bool) -> None:
    """Extract ``zip_path`` into a temp folder beside ``root``, then rename ``provides`` into place."""
    tmp = Path(tempfile.mkdtemp(prefix=".neonsign-extract-", dir=root))
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(tmp, members=_safe_members(archive, zip_path))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise DownloadError(f"{zip_path}: cannot extract: {exc}") from None
        src = tmp / provides
        if not src.exists():
            raise DownloadError(f"{zip_path}: does not contain {provides}")
        dst = root / provides
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            if not force:  # checked before downloading; only a concurrent writer gets here
                raise DownloadError(f"{dst} already exists; pass force=True to replace it")
            old = tmp / ".replaced"
            os.replace(dst, old)  # moved aside first, deleted with tmp below
        os.replace(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download(
    root: str | Path,
    split: str = "all",
    *,
    base_url: str = DEFAULT_BASE_URL,
    progress: bool = True,
    force: bool = False,
    checksums: Mapping[str, str] | None = None,
    keep_archives: bool = False,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Download and extract GTSRB's official archives for ``split`` into ``root``.

    Args:
        root: destination folder (created); afterwards ``load_split(root, ...)`` works.
        split: ``"train"``, ``"test"`` (images + labels) or ``"all"``.
        base_url: where the archives are (a mirror, or a local server in tests).
        progress: tqdm progress bars.
        force: replace data already extracted under ``root``; without it, archives whose
            content is already there are skipped (so the call is idempotent).
        checksums: md5 per archive file name, overriding the published ones (for mirrors that
            serve other archives, e.g. tests).
        keep_archives: keep the downloaded ``.zip`` files in ``root`` after extraction.
        retries: resume attempts within this call after an interrupted transfer.
        timeout: socket timeout in seconds.

    Returns:
        ``Path(root)``.

    Raises:
        NeonsignValueError: unknown split.
        DownloadError / ChecksumError: as for :func:`fetch`, or a bad/unsafe archive.
    """
    if split not in SPLIT_ARCHIVES:
        raise NeonsignValueError(f"split must be one of {tuple(SPLIT_ARCHIVES)}, got {split!r}")
    root = Path(root).expanduser()
    with file_errors("create the data folder", root):
        root.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    sums = dict(checksums or {})
    for key in SPLIT_ARCHIVES[split]:
        archive = ARCHIVES[key]
        if (root / archive.provides).exists() and not force:
            if progress:
                print(
                    f"{root / archive.provides} already exists: skipping {archive.filename} "
                    "(force=True replaces it)"
                )
            continue
        url = urllib.parse.urljoin(base, archive.filename)
        zip_path = fetch(
            url,
            root / archive.filename,
            sums.get(archive.filename, archive.md5),
            progress=progress,
            retries=retries,
            timeout=timeout,
        )
        _extract(zip_path, root, archive.provides, force)
        if not keep_archives:
            zip_path.unlink()
    return root
