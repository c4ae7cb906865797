"""The serving image without a Docker engine: the Dockerfile read into its stages, and a Python
the image's non-root user can run (importable as ``container_helpers``).

tests/test_container.py reproduces the build stages in virtual environments and runs the
image's command as its user; tests/test_permissions.py serves a root-written model as that user.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"


@dataclass
class Stage:
    """One ``FROM ... AS name`` block: its instructions in order (continuations joined)."""

    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for arg in self.all("ENV"):
            for tok in shlex.split(arg):
                key, _, value = tok.partition("=")
                out[key] = value
        return out

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of the last ``keyword`` (CMD, or HEALTHCHECK's CMD)."""
        arg = self.all(keyword)[-1]
        return list(json.loads(arg[arg.index("[") :]))

    def user(self) -> tuple[int, int]:
        uid, _, gid = self.all("USER")[-1].partition(":")
        return int(uid), int(gid or uid)


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The Dockerfile's stages (comments dropped, ``\\``-continued lines joined)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    text = "\n".join(lines).replace("\\\n", " ")
    out: list[Stage] = []
    for line in text.splitlines():
        m = re.match(r"^([A-Z]+)\s+(.*)$", line.strip())
        if not m:
            continue
        keyword, arg = m.group(1), re.sub(r"\s+", " ", m.group(2)).strip()
        if keyword == "FROM":
            image, _, name = arg.partition(" AS ")
            out.append(Stage(image.strip(), name.strip()))
        elif out:
            out[-1].instructions.append((keyword, arg))
    return out


def interpreter_for(uid: int) -> str:
    """A CPython of this minor version that ``uid`` can run: this one, or the system's (this
    one may live under /root, which other users cannot enter). Skips the test when none."""
    candidates = [sys.executable, shutil.which("python3") or "", "/usr/bin/python3"]
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    reasons = []
    for exe in dict.fromkeys(c for c in candidates if c):
        try:
            r = subprocess.run(
                [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                user=uid,  # the image's user and group, no other groups
                group=uid,
                extra_groups=[],
                capture_output=True,
                text=True,
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                timeout=60,
            )
        except OSError as exc:  # cannot be executed by uid: e.g. below /root (mode 0700)
            reasons.append(f"{exe}: {exc.strerror}")
            continue
        if r.returncode == 0 and r.stdout.strip() == want:
            return exe
        reasons.append(f"{exe}: {(r.stderr.strip().splitlines() or [r.stdout.strip()])[-1]}")
    pytest.skip(f"no Python {want} that uid {uid} can run ({'; '.join(reasons)})")
