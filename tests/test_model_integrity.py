"""Verify what you use (issue 17, part 3): every model loader reads a file once, hashes those
bytes and parses the same bytes, so a weights file replaced while it is being loaded is either
refused or loaded whole under the right version -- never the other weights under the card's
version. ``Engine.from_file(dir)`` checks the card's hash; model files must be regular files
(a FIFO in a model's place is refused at once instead of blocking the reader)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neonsign import artifacts
from neonsign.artifacts import CARD_FILE, WEIGHTS_FILE, load_any, load_model, save_model
from neonsign.engine import Engine
from neonsign.errors import ModelError
from serve_helpers import random_state_dict

#: Enough loads of each outcome (the other weights refused, the card's weights loaded) to be
#: sure the replacement raced with the loads; the loop stops at the deadline if it never did.
_EACH = 15
_DEADLINE_S = 60.0


@contextmanager
def _swapping(target: Path, contents: tuple[bytes, bytes]) -> Iterator[None]:
    """A thread that replaces ``target`` by rename, alternating between two contents, until
    the block ends (what a deploy script copying models into place does)."""
    stop = threading.Event()

    def swap() -> None:
        i = 0
        while not stop.is_set():
            tmp = target.with_name(f".swap-{i % 2}")
            tmp.write_bytes(contents[i % 2])
            os.replace(tmp, target)
            i += 1

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _race(load: Callable[[], dict[str, np.ndarray]], want: dict[str, np.ndarray]) -> None:
    """Load repeatedly while the weights are being swapped: every load that succeeds must give
    exactly ``want``; the others must be refused as a hash mismatch."""
    loaded = refused = 0
    deadline = time.monotonic() + _DEADLINE_S
    while (loaded < _EACH or refused < _EACH) and time.monotonic() < deadline:
        try:
            got = load()
        except ModelError as exc:
            assert "sha256" in str(exc), exc
            refused += 1
            continue
        for name, arr in want.items():
            np.testing.assert_array_equal(got[name], arr, err_msg=f"mixed load: {name}")
        loaded += 1
    assert loaded > 0 and refused > 0, (loaded, refused)  # the race did happen


@pytest.fixture
def two_models(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], bytes, bytes]:
    """(model directory of weights A, A's tensors, A's weights bytes, B's weights bytes)."""
    a, b = random_state_dict(1), random_state_dict(2)
    model = save_model(tmp_path / "m", a, artifacts.make_card(seed=1))
    other = save_model(tmp_path / "other", b, artifacts.make_card(seed=2))
    return model, a, (model / WEIGHTS_FILE).read_bytes(), (other / WEIGHTS_FILE).read_bytes()


def test_load_model_under_concurrent_replacement(two_models: Any) -> None:
    model, a, bytes_a, bytes_b = two_models
    with _swapping(model / WEIGHTS_FILE, (bytes_b, bytes_a)):
        _race(lambda: load_model(model, check_logits=False)[0], a)


def test_engine_from_file_dir_under_concurrent_replacement(two_models: Any) -> None:
    model, a, bytes_a, bytes_b = two_models
    with _swapping(model / WEIGHTS_FILE, (bytes_b, bytes_a)):
        _race(lambda: Engine.from_file(model).state_dict, a)


def test_bare_file_version_is_the_hash_of_the_loaded_bytes(two_models: Any) -> None:
    """A bare weights file has no card: its version (``weights_sha256``) must be the hash of
    the very bytes loaded, whichever of the two files that was."""
    model, a, bytes_a, bytes_b = two_models
    bare = model.parent / "bare.safetensors"
    bare.write_bytes(bytes_a)
    b = random_state_dict(2)
    digests = {hashlib.sha256(bytes_a).hexdigest(): a, hashlib.sha256(bytes_b).hexdigest(): b}
    seen: set[str] = set()
    with _swapping(bare, (bytes_b, bytes_a)):
        deadline = time.monotonic() + _DEADLINE_S
        while len(seen) < 2 and time.monotonic() < deadline:
            tensors, card = load_any(bare, check_logits=False)
            want = digests[card["weights_sha256"]]
            for name, arr in want.items():
                np.testing.assert_array_equal(tensors[name], arr, err_msg=f"mixed load: {name}")
            seen.add(card["weights_sha256"])
    assert seen == set(digests)


def test_engine_from_file_refuses_a_tampered_directory(tmp_path: Path) -> None:
    model = save_model(tmp_path / "m", random_state_dict(1), artifacts.make_card())
    other = save_model(tmp_path / "o", random_state_dict(2), artifacts.make_card())
    (model / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ModelError, match=r"model\.safetensors has sha256 .* model_card\.json"):
        Engine.from_file(model)
    # a directory of bare weights (no card) still loads, unchecked, as before
    (model / CARD_FILE).unlink()
    np.testing.assert_array_equal(
        Engine.from_file(model).state_dict["fc2.bias"], random_state_dict(2)["fc2.bias"]
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("which", [CARD_FILE, WEIGHTS_FILE])
def test_a_fifo_in_a_models_place_is_refused_without_blocking(tmp_path: Path, which: str) -> None:
    """Nobody writes the FIFO: a reader that opened it would wait forever. Run in a daemon
    thread so a regression fails this test instead of hanging the suite."""
    model = save_model(tmp_path / "m", random_state_dict(1), artifacts.make_card())
    (model / which).unlink()
    os.mkfifo(model / which)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            load_model(model)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(30)
    assert outcome, f"loading a model whose {which} is a FIFO blocked"
    assert isinstance(outcome[0], ModelError), outcome[0]
    assert "not a regular file" in str(outcome[0]) and which in str(outcome[0])


def test_an_oversized_model_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = save_model(tmp_path / "m", random_state_dict(1), artifacts.make_card())
    size = (model / WEIGHTS_FILE).stat().st_size
    monkeypatch.setattr(artifacts, "MAX_MODEL_FILE_BYTES", size - 1)
    with pytest.raises(ModelError, match=rf"model\.safetensors is {size} bytes, more than"):
        load_model(model)
    monkeypatch.setattr(artifacts, "MAX_MODEL_FILE_BYTES", size)
    load_model(model)
