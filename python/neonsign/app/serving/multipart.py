"""A strict parser for the plain ``multipart/form-data`` bodies the predict routes get.

Starlette's form parsing (python-multipart, spooled files, FastAPI's validation) is the largest
cost of a small upload. Clients (curl, browsers, httpx, requests) send the same simple shape:
``--boundary CRLF``, a few parts with a ``Content-Disposition: form-data; name=...;
filename=...`` and maybe a ``Content-Type`` header, each followed by ``CRLF --boundary``, and
``--boundary--`` at the end. :func:`parse_form` reads exactly that shape with a few ``bytes``
operations; for anything else (a preamble, other part headers, ``filename*=``, escapes in a
quoted value, transport padding, more parts than allowed) it answers None and the caller lets
the general FastAPI route parse the body, which keeps every behaviour and error of that route.
It never guesses: a body it accepts has one meaning.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Part", "boundary_of", "parse_form"]

#: ``name="value"`` or ``name=token`` parameters of a header (no escapes inside quotes).
_PARAM = re.compile(rb';\s*([A-Za-z0-9_\-*]+)\s*=\s*(?:"([^"\\\r\n]*)"|([^\s;"\\]+))\s*')
#: RFC 2046 boundary characters.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{1,70}")


class Part(NamedTuple):
    """One part of a form: its ``filename`` (None for a plain field) and its bytes."""

    filename: str | None
    data: bytes


def _params(value: bytes) -> dict[bytes, bytes] | None:
    """``; key=value`` parameters after a header's first token, or None if any is unusual."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if match is None:
            return None
        key = match.group(1).lower()
        if key in out or key.endswith(b"*"):  # repeated, or RFC 5987 encoded: not ours
            return None
        quoted, token = match.group(2), match.group(3)
        out[key] = quoted if quoted is not None else token
        pos = match.end()
    return out


def boundary_of(content_type: bytes) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type, or None."""
    kind, sep, rest = content_type.partition(b";")
    if kind.strip().lower() != b"multipart/form-data" or not sep:
        return None
    params = _params(b";" + rest)
    boundary = params.get(b"boundary") if params else None
    if boundary is None or not _BOUNDARY.fullmatch(boundary) or boundary.endswith(b" "):
        return None
    return boundary


def _disposition(head: bytes) -> dict[bytes, bytes] | None:
    """The ``Content-Disposition: form-data`` parameters of a part's headers; None if it has
    none, several, or any header other than it and ``Content-Type``."""
    params = None
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        name = name.lower()
        if not colon or name.strip() != name:
            return None
        if name == b"content-disposition":
            kind, _, rest = value.strip().partition(b";")
            if kind.strip().lower() != b"form-data" or params is not None:
                return None
            params = _params(b";" + rest if rest else b"")
            if params is None:
                return None
        elif name != b"content-type":
            return None
    return params


def _part(raw: bytes) -> tuple[str, Part] | None:
    """``(field name, part)`` of one part (its headers, a blank line, its data), or None."""
    head, sep, data = raw.partition(b"\r\n\r\n")
    params = _disposition(head) if sep else None
    if not params or b"name" not in params or set(params) - {b"name", b"filename"}:
        return None
    try:
        field = params[b"name"].decode("utf-8")
        filename = params[b"filename"].decode("utf-8") if b"filename" in params else None
    except UnicodeDecodeError:
        return None
    return field, Part(filename, data)


def parse_form(body: bytes, content_type: bytes, max_parts: int) -> dict[str, list[Part]] | None:
    """The parts of a plain ``multipart/form-data`` body by field name, in order; None when
    the body is not of the simple shape this parser reads (see the module doc) or has more
    than ``max_parts`` parts. None is not an error: the caller falls back to Starlette."""
    boundary = boundary_of(content_type)
    if boundary is None:
        return None
    first = b"--" + boundary + b"\r\n"
    if not body.startswith(first):
        return None
    chunks = body[len(first) :].split(b"\r\n--" + boundary)
    if len(chunks) < 2 or len(chunks) - 1 > max_parts or chunks[-1] not in (b"--", b"--\r\n"):
        return None
    form: dict[str, list[Part]] = {}
    for i, chunk in enumerate(chunks[:-1]):
        if i:
            if not chunk.startswith(b"\r\n"):  # padding after a delimiter, or "--" too early
                return None
            chunk = chunk[2:]
        parsed = _part(chunk)
        if parsed is None:
            return None
        form.setdefault(parsed[0], []).append(parsed[1])
    return form
