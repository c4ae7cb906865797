"""Tests of the profiler: the C span recorder, the backends, reports, compare and the gate."""

from __future__ import annotations

import numpy as np
import pytest

from neonsign import _native


# ---------------------------------------------------------------------------------------------
# The C span recorder


def _tree(rec: _native.Recorder) -> list[tuple[str, int, str | None]]:
    r = rec.records()
    names = rec.names()
    out = []
    for i in range(rec.count):
        p = int(r["parent"][i])
        out.append((names[r["name"][i]], int(r["depth"][i]), names[r["name"][p]] if p >= 0 else None))
    return out


def test_recorder_nests_spans_with_parents_and_depths():
    rec = _native.Recorder()
    rec.begin("forward")
    rec.begin("conv1")
    rec.end("conv1")
    rec.begin("conv2")
    rec.begin("inner")
    rec.end()
    rec.end("conv2")
    rec.end("forward")
    rec.begin("forward")
    rec.end()
    assert _tree(rec) == [
        ("forward", 0, None),
        ("conv1", 1, "forward"),
        ("conv2", 1, "forward"),
        ("inner", 2, "conv2"),
        ("forward", 0, None),
    ]
    r = rec.records()
    assert r["complete"].all()
    assert rec.open_spans == 0
    # children lie inside their parent in time, and the parent lasts at least their sum
    assert r["start_ns"][1] >= r["start_ns"][0] and r["end_ns"][2] <= r["end_ns"][0]
    assert r["duration_ns"][0] >= r["duration_ns"][1] + r["duration_ns"][2]
    assert r["duration_ns"][2] >= r["duration_ns"][3]
    assert (r["calls"] == 1).all()
    if _native.prof_cycles_hz() > 0:
        assert r["cycles"][0] > 0


def test_recorder_accepts_interned_ids_and_keeps_names_over_reset():
    rec = _native.Recorder()
    a = rec.intern("a")
    assert rec.intern("a") == a
    rec.begin(a)
    rec.end(a)
    rec.reset()
    assert rec.count == 0 and rec.names() == ["a"]
    rec.begin(a)
    rec.end("a")
    assert rec.count == 1


def test_recorder_disabled_records_nothing_and_keeps_nesting_balanced():
    rec = _native.Recorder(enabled=False)
    assert rec.enabled is False
    for _ in range(1000):
        rec.begin("x")
        rec.end("x")
    assert rec.count == 0
    # switched on inside a span that began while off: the inner span is skipped, ends still match
    rec.begin("outer")
    rec.enabled = True
    rec.begin("inner")
    rec.end("inner")
    rec.end("outer")
    assert rec.count == 0
    # switched off inside a recorded span: the span is still closed by its end
    rec.begin("outer")
    rec.enabled = False
    rec.begin("skipped")
    rec.end("skipped")
    rec.end("outer")
    assert _tree(rec) == [("outer", 0, None)]
    assert rec.records()["complete"].all()


def test_recorder_add_attaches_external_timings():
    rec = _native.Recorder()
    rec.begin("forward")
    rec.end()
    start = int(rec.records()["start_ns"][0])
    rec.add("conv1", 1500, calls=3, parent=0, start_ns=start)
    r = rec.records()
    assert _tree(rec) == [("forward", 0, None), ("conv1", 1, "forward")]
    assert int(r["duration_ns"][1]) == 1500 and int(r["calls"][1]) == 3


def test_recorder_grows_past_its_initial_capacity():
    rec = _native.Recorder(capacity=2)
    for _ in range(100):
        rec.begin("s")
        rec.end()
    assert rec.count == 100 and rec.dropped == 0


@pytest.mark.parametrize(
    "action, exc",
    [
        (lambda r: r.end(), ValueError),                                 # end without begin
        (lambda r: (r.begin("a"), r.end("b")), ValueError),              # mismatched end
        (lambda r: r.begin(""), ValueError),                             # empty name
        (lambda r: r.begin("x" * 200), ValueError),                      # name too long
        (lambda r: r.begin("a\0b"), ValueError),                         # embedded NUL
        (lambda r: r.begin(3.5), TypeError),                             # not a name
        (lambda r: r.begin(99), ValueError),                             # unknown id
        (lambda r: r.add("a", 10, parent=5), ValueError),                # no such parent
        (lambda r: r.add("a", 2**64 - 1, start_ns=10), ValueError),      # clock overflow
        (lambda r: [r.begin("d") for _ in range(100)], Exception),       # too deep
    ],
)
def test_recorder_rejects_bad_use(action, exc):
    rec = _native.Recorder()
    with pytest.raises(exc):
        action(rec)


def test_recorder_rejects_negative_capacity():
    with pytest.raises(ValueError):
        _native.Recorder(capacity=-1)


def test_cycle_counter_and_clock_are_monotonic():
    t0, c0 = _native.prof_now_ns(), _native.prof_cycles()
    t1, c1 = _native.prof_now_ns(), _native.prof_cycles()
    assert t1 >= t0
    hz = _native.prof_cycles_hz()
    if hz > 0:
        assert c1 >= c0 and 1e6 < hz < 1e11
    else:
        assert c0 == c1 == 0
