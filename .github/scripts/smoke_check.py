#!/usr/bin/env python3
"""Smoke-test a running neonsign server the way a user calls it: /healthz, /readyz, then the
learning path's ``curl -F file=@img.png .../predict/`` (a multipart upload of one PNG).

Used by the workflows against ``docker run`` of the serving image (.github/scripts/
smoke-test-image.sh) and by tests/test_container.py against the image's command run outside
Docker as the image's user, so both check the same things:

- ``/healthz`` answers 200 within ``--timeout`` seconds (the server is up);
- ``/readyz`` answers 200 with ``"status": "ready"`` (the model is loaded);
- ``POST /predict/`` answers 200 with a class id in 0..42, a probability in [0, 1], and
  ``model_version`` equal to the model card's ``weights_sha256`` (the model that was mounted or
  baked in is the one serving);
- with ``--expect``, the predicted class and probability equal ``neonsign predict``'s on the same
  file (the served path is the tested path).

Standard library only: it runs on a bare runner's ``python3``. Exit 0 when every check passes,
1 with the failing check on stderr otherwise. ``--summary FILE`` appends a Markdown table (e.g.
``$GITHUB_STEP_SUMMARY``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

NUM_CLASSES = 43


class SmokeError(Exception):
    """A check failed (the message names the endpoint and what was wrong)."""


def _call(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    """(status, parsed JSON body or text) of one request; HTTP errors are answers, not raises."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def wait_healthy(base: str, timeout: float) -> float:
    """Poll /healthz until it answers 200; the seconds it took."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        try:
            status, body = _call(base + "/healthz")
            if status == 200:
                return time.monotonic() - start
            last = f"HTTP {status}: {body}"
        except OSError as exc:  # connection refused while the server starts
            last = str(exc)
        time.sleep(1)
    raise SmokeError(f"/healthz: not healthy after {timeout:.0f} s ({last})")


def multipart(field: str, path: Path, content_type: str) -> tuple[bytes, str]:
    """A multipart/form-data body with one file field (what ``curl -F field=@path`` sends)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{path.name}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def check_prediction(answer: Any, weights_sha256: str, expected: dict[str, Any] | None) -> None:
    """The /predict/ answer: fields, ranges, the serving model's hash, and ``expected``."""
    if not isinstance(answer, dict):
        raise SmokeError(f"/predict/: expected a JSON object, got {answer!r}")
    cls, prob = answer.get("predicted_class"), answer.get("probability")
    if not isinstance(cls, int) or not 0 <= cls < NUM_CLASSES:
        raise SmokeError(f"/predict/: predicted_class {cls!r} is not a class id 0..42")
    if not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
        raise SmokeError(f"/predict/: probability {prob!r} is not in [0, 1]")
    if answer.get("model_version") != weights_sha256:
        raise SmokeError(
            f"/predict/: model_version {answer.get('model_version')!r} is not the model card's "
            f"weights_sha256 {weights_sha256!r}: another model is serving"
        )
    if expected is not None:
        if cls != expected["class_id"]:
            raise SmokeError(
                f"/predict/: class {cls} but `neonsign predict` says {expected['class_id']} "
                "for the same file and model"
            )
        if abs(float(prob) - float(expected["probability"])) > 1e-5:
            raise SmokeError(
                f"/predict/: probability {prob} but `neonsign predict` says "
                f"{expected['probability']}"
            )


def smoke(base: str, image: Path, card: Path, expect: Path | None, timeout: float) -> list[str]:
    """Run every check against ``base``; the Markdown table rows of what passed."""
    seconds = wait_healthy(base, timeout)
    status, ready = _call(base + "/readyz")
    if status != 200 or not isinstance(ready, dict) or ready.get("status") != "ready":
        raise SmokeError(f"/readyz: HTTP {status} {ready!r}, expected 200 with status ready")
    sha = json.loads(card.read_text(encoding="utf-8"))["weights_sha256"]
    expected = None
    if expect is not None:
        rows = json.loads(expect.read_text(encoding="utf-8"))
        expected = rows[0] if isinstance(rows, list) else rows
    ctype = {".png": "image/png", ".jpg": "image/jpeg", ".ppm": "image/x-portable-pixmap"}
    body, header = multipart("file", image, ctype.get(image.suffix.lower(), "image/png"))
    status, answer = _call(base + "/predict/", data=body, headers={"Content-Type": header})
    if status != 200:
        raise SmokeError(f"/predict/: HTTP {status} {answer!r}")
    check_prediction(answer, sha, expected)
    same = "same as `neonsign predict`" if expected is not None else "not compared"
    return [
        f"| `/healthz` | 200 after {seconds:.1f} s |",
        f"| `/readyz` | 200, `{ready.get('status')}` |",
        f"| `POST /predict/` ({image.name}) | class {answer['predicted_class']} "
        f"({answer.get('label', '?')}), p={answer['probability']:.4f}, {same} |",
        f"| `model_version` | `{sha[:12]}...` = the model card's weights_sha256 |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument("--image", required=True, type=Path, help="image file to upload")
    parser.add_argument("--card", required=True, type=Path, help="the model's model_card.json")
    parser.add_argument("--expect", type=Path, help="`neonsign predict --format json` output")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for health")
    parser.add_argument("--summary", type=Path, help="append a Markdown table to this file")
    parser.add_argument("--title", default="Container smoke test", help="the table's heading")
    args = parser.parse_args(argv)
    try:
        rows = smoke(args.url.rstrip("/"), args.image, args.card, args.expect, args.timeout)
    except (SmokeError, OSError, KeyError, ValueError) as exc:
        print(f"smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    table = "\n".join([f"### {args.title}", "", "| check | result |", "|---|---|", *rows, ""])
    print(table)
    if args.summary:
        with args.summary.open("a", encoding="utf-8") as fh:
            fh.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
