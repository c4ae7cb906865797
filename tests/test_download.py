"""neonsign.download against a real HTTP server on 127.0.0.1 serving archives built here."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neonsign import cli, data
from neonsign.download import ARCHIVES, download, fetch
from neonsign.errors import ChecksumError, DownloadError, NeonsignValueError


class _Server:
    """Serves ``files`` with Range support; can cut chosen transfers short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_next: dict[str, int] = {}  # name -> bytes to send before closing (once)
        self.ignore_range = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                body = server.files.get(name)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                cut = server.cut_next.pop(name, None)
                if cut is not None:  # announce everything, send part of it, hang up
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/archives/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _zip(entries: dict[str, Path | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, src in entries.items():
            z.writestr(name, src if isinstance(src, bytes) else src.read_bytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def archives(synth_root: Path) -> dict[str, bytes]:
    """The three official archives, in their real internal layout, from the synthetic data."""
    train = {
        f"GTSRB/Training/{p.parent.name}/{p.name}": p
        for p in sorted((synth_root / "Final_Training" / "Images").glob("*/*"))
    }
    test = {
        f"GTSRB/Final_Test/Images/{p.name}": p
        for p in sorted((synth_root / "Final_Test" / "Images").iterdir())
    }
    return {
        ARCHIVES["train"].filename: _zip(train),
        ARCHIVES["test_images"].filename: _zip(test),
        ARCHIVES["test_labels"].filename: _zip(
            {"GT-final_test.csv": synth_root / "GT-final_test.csv"}
        ),
    }


@pytest.fixture
def server(archives: dict[str, bytes]) -> Iterator[_Server]:
    s = _Server()
    s.files.update(archives)
    yield s
    s.close()


def _sums(archives: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.md5(body).hexdigest() for name, body in archives.items()}


def test_download_extract_and_load(
    server: _Server, archives, synth_root: Path, tmp_path: Path
) -> None:
    root = download(
        tmp_path / "gtsrb", "all", base_url=server.url, progress=False, checksums=_sums(archives)
    )
    assert (root / "GTSRB" / "Training" / "00042").is_dir()
    assert (root / "GT-final_test.csv").is_file()
    assert (
        not list(root.glob("*.zip"))
        and not list(root.glob("*.part"))
        and not list(root.glob(".neonsign-*"))
    )
    spec = data.find_split(root, "train")
    assert spec.layout == "official-fixed"
    _, labels, meta = data.load_split(root, "train", dtype="uint8")
    _, ref_labels, ref_meta = data.load_split(synth_root, "train", dtype="uint8")
    assert meta.checksum == ref_meta.checksum
    np.testing.assert_array_equal(labels, ref_labels)
    _, _, test_meta = data.load_split(root, "test", dtype="uint8")
    assert test_meta.checksum == data.load_split(synth_root, "test", dtype="uint8")[2].checksum

    # a second call finds everything in place and downloads nothing
    before = len(server.requests)
    download(root, "all", base_url=server.url, progress=False, checksums=_sums(archives))
    assert len(server.requests) == before


def test_force_replaces_existing_data(server: _Server, archives, tmp_path: Path) -> None:
    root = tmp_path / "g"
    download(root, "test", base_url=server.url, progress=False, checksums=_sums(archives))
    marker = root / "GTSRB" / "Final_Test" / "Images" / "stale.txt"
    marker.write_text("old")
    download(root, "test", base_url=server.url, progress=False, checksums=_sums(archives))
    assert marker.exists()  # not overwritten without force
    download(
        root, "test", base_url=server.url, progress=False, checksums=_sums(archives), force=True
    )
    assert not marker.exists() and (root / "GTSRB" / "Final_Test" / "Images" / "00000.ppm").exists()


def test_wrong_md5_raises_and_deletes_the_part(server: _Server, archives, tmp_path: Path) -> None:
    name = ARCHIVES["test_labels"].filename
    real = hashlib.md5(archives[name]).hexdigest()
    with pytest.raises(ChecksumError) as exc:
        download(
            tmp_path,
            "test",
            base_url=server.url,
            progress=False,
            checksums={**_sums(archives), name: "0" * 32},
        )
    assert "0" * 32 in str(exc.value) and real in str(exc.value)
    assert not (tmp_path / (name + ".part")).exists() and not (tmp_path / name).exists()
    assert not (tmp_path / "GT-final_test.csv").exists()


def test_published_md5_is_checked_by_default(server: _Server, tmp_path: Path) -> None:
    # the server's archives are synthetic, so the published md5 of the real one cannot match
    with pytest.raises(ChecksumError, match=ARCHIVES["test_images"].md5):
        download(tmp_path, "test", base_url=server.url, progress=False)


def test_interrupted_transfer_resumes_with_range(server: _Server, archives, tmp_path: Path) -> None:
    name = ARCHIVES["train"].filename
    size = len(archives[name])
    server.cut_next[name] = size // 3
    with pytest.raises(DownloadError, match="interrupted") as exc:
        download(
            tmp_path,
            "train",
            base_url=server.url,
            progress=False,
            checksums=_sums(archives),
            retries=0,
        )
    assert not isinstance(exc.value, ChecksumError)
    part = tmp_path / (name + ".part")
    assert part.stat().st_size == size // 3
    download(tmp_path, "train", base_url=server.url, progress=False, checksums=_sums(archives))
    assert server.requests[-1] == (name, f"bytes={size // 3}-")
    assert not part.exists()
    assert data.load_split(tmp_path, "train", dtype="uint8", limit=43)[0].shape == (43, 32, 32, 3)


def test_interruption_is_retried_within_one_call(server: _Server, archives, tmp_path: Path) -> None:
    name = ARCHIVES["test_images"].filename
    server.cut_next[name] = 1000
    download(tmp_path, "test", base_url=server.url, progress=False, checksums=_sums(archives))
    ranges = [r for n, r in server.requests if n == name]
    assert ranges == [None, "bytes=1000-"]


def test_server_ignoring_range_restarts_cleanly(server: _Server, archives, tmp_path: Path) -> None:
    name = ARCHIVES["test_labels"].filename
    dest = tmp_path / name
    (tmp_path / (name + ".part")).write_bytes(archives[name][:10])
    server.ignore_range = True
    fetch(server.url + name, dest, hashlib.md5(archives[name]).hexdigest(), progress=False)
    assert dest.read_bytes() == archives[name]


def test_http_404_is_a_download_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404") as exc:
        fetch(server.url + "nothing.zip", tmp_path / "nothing.zip", None, progress=False)
    assert "nothing.zip" in str(exc.value)
    assert not (tmp_path / "nothing.zip.part").exists()


def test_unreachable_server_is_a_download_error(tmp_path: Path) -> None:
    s = _Server()
    url = s.url
    s.close()  # nothing listens there any more
    with pytest.raises(DownloadError, match="cannot connect"):
        fetch(url + "x.zip", tmp_path / "x.zip", None, progress=False, retries=0, timeout=5)


def test_zip_slip_is_refused(server: _Server, archives, tmp_path: Path) -> None:
    name = ARCHIVES["test_labels"].filename
    server.files[name] = _zip({"GT-final_test.csv": b"x", "../../evil.txt": b"owned"})
    with pytest.raises(DownloadError, match="unsafe member"):
        download(
            tmp_path / "r",
            "test",
            base_url=server.url,
            progress=False,
            checksums={**_sums(archives), name: hashlib.md5(server.files[name]).hexdigest()},
        )
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert not (tmp_path / "r" / "GT-final_test.csv").exists()


def test_corrupt_archive_is_a_download_error(server: _Server, archives, tmp_path: Path) -> None:
    name = ARCHIVES["test_labels"].filename
    server.files[name] = b"this is not a zip file"
    with pytest.raises(DownloadError, match="cannot extract"):
        download(
            tmp_path,
            "test",
            base_url=server.url,
            progress=False,
            checksums={**_sums(archives), name: hashlib.md5(server.files[name]).hexdigest()},
        )
    assert not list(tmp_path.glob(".neonsign-extract-*"))


def test_bad_split(tmp_path: Path) -> None:
    with pytest.raises(NeonsignValueError):
        download(tmp_path, "validation", progress=False)


def test_cli_download_reports_http_errors(server: _Server, tmp_path: Path, capsys) -> None:
    server.files.clear()
    assert (
        cli.main(["download", str(tmp_path), "--split", "test", "--base-url", server.url, "-q"])
        == 2
    )
    assert "HTTP 404" in capsys.readouterr().err
