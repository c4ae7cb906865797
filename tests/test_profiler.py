"""Tests of the profiler: the C span recorder, the backends, reports, compare and the gate."""

from __future__ import annotations

import numpy as np
import pytest

from neonsign import _native
from support import needs_subprocess

# ---------------------------------------------------------------------------------------------
# The C span recorder


def _tree(rec: _native.Recorder) -> list[tuple[str, int, str | None]]:
    r = rec.records()
    names = rec.names()
    out = []
    for i in range(rec.count):
        p = int(r["parent"][i])
        out.append(
            (names[r["name"][i]], int(r["depth"][i]), names[r["name"][p]] if p >= 0 else None)
        )
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
        (lambda r: r.end(), ValueError),  # end without begin
        (lambda r: (r.begin("a"), r.end("b")), ValueError),  # mismatched end
        (lambda r: r.begin(""), ValueError),  # empty name
        (lambda r: r.begin("x" * 200), ValueError),  # name too long
        (lambda r: r.begin("a\0b"), ValueError),  # embedded NUL
        (lambda r: r.begin(3.5), TypeError),  # not a name
        (lambda r: r.begin(99), ValueError),  # unknown id
        (lambda r: r.add("a", 10, parent=5), ValueError),  # no such parent
        (lambda r: r.add("a", 2**64 - 1, start_ns=10), ValueError),  # clock overflow
        (lambda r: r.add("a", -5), OverflowError),  # negative duration
        (lambda r: r.add("a", 5, calls=0), ValueError),  # no calls
        (lambda r: r.add("a", 5, start_ns=-1), OverflowError),  # negative start
        (lambda r: r.add("a", 1.5), TypeError),  # not an integer
        (lambda r: [r.begin("d") for _ in range(100)], Exception),  # too deep
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


# ---------------------------------------------------------------------------------------------
# Python Recorder


def test_python_recorder_span_context_manager_and_spans():
    from neonsign.profiler import Recorder

    rec = Recorder()
    with rec.span("forward"):
        with rec.span("conv1"):
            pass
        with rec.span(rec.intern("fc1")):
            pass
    rec.disable()
    with rec.span("ignored"):
        pass
    rec.enable()
    spans = rec.spans()
    assert [(s["name"], s["depth"]) for s in spans] == [("forward", 0), ("conv1", 1), ("fc1", 1)]
    assert (
        spans[0]["self_ns"]
        == spans[0]["duration_ns"] - spans[1]["duration_ns"] - spans[2]["duration_ns"]
    )
    assert all(s["self_ns"] >= 0 for s in spans)


def test_recorder_span_closes_on_exception():
    from neonsign.profiler import Recorder

    rec = Recorder()
    with pytest.raises(KeyError), rec.span("boom"):
        raise KeyError("x")
    assert rec.open_spans == 0 and rec.records()["complete"].all()


def test_recorder_kernel_needs_an_engine():
    from neonsign.errors import NeonsignValueError
    from neonsign.profiler import Recorder

    with pytest.raises(NeonsignValueError, match="no native engine"):
        Recorder().kernel = "ref"


# ---------------------------------------------------------------------------------------------
# profile(): libtorch backends (and native ones when the engine is built)

TORCH_BACKENDS = ["torch", "torch-onednn-off", "torch-channels-last"]
SMALL = dict(batch=8, threads=1, repeats=3, warmup=1)


def _bf16_available() -> bool:
    from neonsign.profiler import list_backends

    return any(b.name == "torch-bf16" and b.available for b in list_backends())


def _native_available() -> bool:
    from neonsign.profiler import list_backends

    return any(b.name == "native" and b.available for b in list_backends())


@pytest.fixture(scope="module")
def torch_report():
    pytest.importorskip("torch")
    from neonsign.profiler import profile

    names = list(TORCH_BACKENDS) + (["torch-bf16"] if _bf16_available() else [])
    return profile(backends=names, **SMALL)


@pytest.mark.torch
def test_toggles_change_the_aten_kernels(torch_report):
    import torch

    conv = {b: torch_report.backend(b)["layer_kernels"]["conv1"] for b in TORCH_BACKENDS}
    # oneDNN on vs off run different convolution kernels
    assert conv["torch"] != conv["torch-onednn-off"]
    if torch.backends.mkldnn.is_available():
        assert "aten::mkldnn_convolution" in conv["torch"]
        assert "aten::mkldnn_convolution" not in conv["torch-onednn-off"]
    # channels_last changes how flatten runs (a copy out of NHWC instead of a view)
    cl = torch_report.backend("torch-channels-last")
    assert cl["settings"]["memory_format"] == "channels_last"
    assert (
        cl["layer_kernels"]["flatten"] != torch_report.backend("torch")["layer_kernels"]["flatten"]
    )
    for b in torch_report.data["backends"]:
        assert any(k["name"].startswith("aten::") for k in b["aten_kernels"])


@pytest.mark.torch
def test_per_layer_times_add_up_to_the_total(torch_report):
    from neonsign.profiler import LAYERS

    for b in torch_report.data["backends"]:
        rows = {r["name"]: r for r in b["layers"]}
        assert set(rows) == {"forward", *LAYERS}
        assert all(r["calls"] == SMALL["repeats"] for r in rows.values())
        # self times partition the forward time exactly; the forward span's self time is the
        # profiler's (and Python's) overhead between layers
        assert sum(r["self_ns_total"] for r in rows.values()) == rows["forward"]["total_ns_total"]
        assert sum(b["total"]["per_repeat_ns"]) == rows["forward"]["total_ns_total"]
        layer_sum = sum(rows[n]["self_ns_total"] for n in LAYERS)
        assert 0 < layer_sum <= rows["forward"]["total_ns_total"]
        assert rows["forward"]["self_ns_per_forward"]["median"] < b["total"]["median_ns"] / 2
        assert abs(sum(r["self_pct"] for r in rows.values()) - 100.0) < 1e-6


@pytest.mark.torch
def test_every_backend_gives_the_same_top1(torch_report):
    for b in torch_report.data["backends"]:
        acc = b["accuracy_check"]
        if b["name"] == "torch-bf16":
            # bfloat16 keeps 8 bits of mantissa: allow a rare flip between near-tied classes
            assert acc["top1_agreement"] >= 0.75
            assert acc["max_abs_logit_diff"] > 0  # the toggle did change the arithmetic
        else:
            assert acc["top1_agreement"] == 1.0
            assert acc["max_abs_logit_diff"] < 1e-3


@pytest.mark.torch
def test_logits_match_a_plain_torch_module(torch_report):
    import torch
    import torch.nn.functional as F

    from neonsign.profiler import _load_inputs, random_state_dict

    # an independent forward with nn modules on the same weights and inputs
    sd = random_state_dict(0)
    x, _ = _load_inputs(None, SMALL["batch"], "test", 0)
    conv1, conv2 = torch.nn.Conv2d(3, 32, 3), torch.nn.Conv2d(32, 64, 3)
    fc1, fc2 = torch.nn.Linear(2304, 128), torch.nn.Linear(128, 43)
    mods = {"conv1": conv1, "conv2": conv2, "fc1": fc1, "fc2": fc2}
    with torch.no_grad():
        for k, v in sd.items():
            layer, what = k.split(".")
            getattr(mods[layer], what).copy_(torch.from_numpy(v))
        t = F.max_pool2d(F.relu(conv1(torch.from_numpy(x))), 2)
        t = F.max_pool2d(F.relu(conv2(t)), 2)
        ref = fc2(F.relu(fc1(torch.flatten(t, 1)))).argmax(1).numpy()
    from neonsign.profiler import Recorder, _TorchRunner, list_backends

    backend = next(b for b in list_backends() if b.name == "torch")
    got = _TorchRunner(backend, sd, 1, Recorder()).run(x).argmax(1)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.torch
def test_report_json_validates_against_the_shipped_schema(torch_report, tmp_path):
    import json

    jsonschema = pytest.importorskip("jsonschema")
    from neonsign.profile_report import ProfileReport, schema_path

    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    path = tmp_path / "r.json"
    torch_report.save_json(path)
    data = json.loads(path.read_text())
    jsonschema.validate(data, schema)
    assert data["schema_version"] == 1
    assert data["settings"]["random_weights"] and data["settings"]["random_input"]
    assert "random weights: no model was given" in data["notes"]
    back = ProfileReport.load(path)
    assert back.backends == torch_report.backends
    # and a broken report fails the schema
    del data["backends"][0]["total"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


@pytest.mark.torch
def test_report_renders_table_markdown_and_html(torch_report):
    text = torch_report.table("torch")
    for col in (
        "Name",
        "Self CPU %",
        "Self CPU",
        "CPU total %",
        "CPU total",
        "CPU time avg",
        "# of Calls",
    ):
        assert col in text
    assert "Self CPU time total:" in text and "conv2" in text
    assert "Speedup" in torch_report.summary()
    md = torch_report.markdown()
    assert md.startswith("## neonsign profile") and "| conv1 |" in md.replace("  ", " ")
    html = torch_report._repr_html_()
    assert "<table>" in html and "torch-onednn-off" in html


# ---------------------------------------------------------------------------------------------
# compare and the gate


def _slowed_report(conv2_sleep_s: float):
    """A real profile of the torch backend with a sleep injected into conv2."""
    import time

    from neonsign import profiler

    orig = profiler._TorchRunner.__init__

    def init(self, *a, **k):
        orig(self, *a, **k)
        span_id, op = self.ops[3]
        self.ops[3] = (span_id, lambda t: (time.sleep(conv2_sleep_s), op(t))[1])

    mp = pytest.MonkeyPatch()
    mp.setattr(profiler._TorchRunner, "__init__", init)
    try:
        return profiler.profile(backends=["torch"], aten=False, order="sequential", **SMALL)
    finally:
        mp.undo()


@pytest.mark.torch
def test_compare_catches_an_injected_slowdown_and_passes_an_equal_run(tmp_path):
    pytest.importorskip("torch")
    from neonsign.profile_report import compare

    # 0.2 s per conv2 call dwarfs conv2 itself (about 1 ms at batch 8) even on a loaded machine,
    # so the verdict does not depend on timing noise.
    base = _slowed_report(0.0)
    slow = _slowed_report(0.2)
    cmp = compare(base, slow, fail_if_slower=10, layers=["conv2"])
    assert cmp.failed
    assert any("conv2" in r for r in cmp.regressions) and any("total" in r for r in cmp.regressions)
    assert any("Self CPU time total (median per forward) went from" in h for h in cmp.headline())
    conv2 = next(r for r in cmp.rows if r["layer"] == "conv2")
    assert conv2["change_pct"] > 100
    same = compare(base, base, fail_if_slower=0, layers=["conv2", "fc1"])
    assert not same.failed and not same.mismatches
    assert "passed" in same.verdict()


def _fake_report(**settings):
    """A minimal valid report for compare's bookkeeping tests (numbers are arbitrary inputs)."""
    from neonsign.profile_report import ProfileReport

    def backend(name, total, conv2):
        def layer(n, v):
            return {
                "name": n,
                "calls": 1,
                "self_ns_total": v,
                "total_ns_total": v,
                "self_ns_avg": v,
                "total_ns_avg": v,
                "self_pct": 0,
                "total_pct": 0,
                "self_ns_per_forward": {k: v for k in ("median", "mean", "min", "max", "q1", "q3")},
            }

        t = {k: total for k in ("median_ns", "mean_ns", "min_ns", "max_ns", "q1_ns", "q3_ns")}
        return {
            "name": name,
            "family": "torch",
            "layers": [layer("forward", total - conv2), layer("conv2", conv2)],
            "total": {"per_repeat_ns": [total], "self_cpu_time_total_ns": total, **t},
        }

    s = {"batch": 64, "threads": 2, "repeats": 1, "warmup": 0, "input": "x", "torch": "2"}
    s.update(settings)
    return ProfileReport(
        {
            "schema_version": 1,
            "machine": {"arch": "x", "cpu_model": "y", "cpu_count": 2},
            "settings": s,
            "baseline": "torch",
            "backends": [
                backend("torch", 6_600_000, 3_000_000),
                backend("torch-onednn-off", 14_100_000, 9_000_000),
            ],
        }
    )


def test_compare_reports_mismatched_settings_instead_of_comparing_silently():
    from neonsign.profile_report import compare

    cmp = compare(_fake_report(), _fake_report(threads=4, batch=1))
    assert any("threads" in m for m in cmp.mismatches) and any("batch" in m for m in cmp.mismatches)
    assert not cmp.failed
    assert compare(_fake_report(), _fake_report(threads=4), strict=True).failed
    assert "WARNING" in cmp.text()


def test_compare_two_backends_of_one_report_gives_the_learning_path_line():
    from neonsign.profile_report import compare_backends

    cmp = compare_backends(_fake_report(), "torch-onednn-off", "torch", fail_if_slower=5)
    assert cmp.headline() == [
        "[torch-onednn-off -> torch] Self CPU time total (median per forward) went from 14.100 ms "
        "to 6.600 ms: -53.2% (2.14x faster)"
    ]
    assert not cmp.failed
    assert "went from 14.100 ms" in cmp._repr_html_() and "| conv2 |" in cmp.markdown()
    assert compare_backends(_fake_report(), "torch", "torch-onednn-off", fail_if_slower=5).failed


def test_compare_rejects_bad_arguments():
    from neonsign.errors import NeonsignValueError
    from neonsign.profile_report import compare, compare_backends

    with pytest.raises(NeonsignValueError, match="nope"):
        compare_backends(_fake_report(), "torch", "nope")
    with pytest.raises(NeonsignValueError, match="layer 'fc9'"):
        compare(_fake_report(), _fake_report(), fail_if_slower=1, layers=["fc9"])
    with pytest.raises(NeonsignValueError, match="fail_if_slower"):
        compare(_fake_report(), _fake_report(), fail_if_slower=-1)


def test_loading_bad_reports_names_the_file_and_field(tmp_path):
    import json

    from neonsign.errors import NeonsignValueError, UnsupportedError
    from neonsign.profile_report import ProfileReport

    with pytest.raises(FileNotFoundError, match="missing.json"):
        ProfileReport.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(NeonsignValueError, match="bad.json: not valid JSON"):
        ProfileReport.load(bad)
    good = _fake_report().data
    newer = dict(good, schema_version=99)
    bad.write_text(json.dumps(newer))
    with pytest.raises(UnsupportedError, match="schema_version 99"):
        ProfileReport.load(bad)
    broken = json.loads(json.dumps(good))
    del broken["backends"][1]["total"]["median_ns"]
    bad.write_text(json.dumps(broken))
    with pytest.raises(NeonsignValueError, match=r"backends\[1\].total: missing field 'median_ns'"):
        ProfileReport.load(bad)


# ---------------------------------------------------------------------------------------------
# bad input to profile()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(backends="torch,nope"), "NeonsignValueError", "unknown backend 'nope'"),
        (dict(batch=0), "NeonsignValueError", "batch"),
        (dict(repeats=0), "NeonsignValueError", "repeats"),
        (dict(threads=0), "NeonsignValueError", "threads"),
        (dict(baseline="native-zzz"), "NeonsignValueError", "baseline"),
        (dict(order="random"), "NeonsignValueError", "order"),
        (dict(model={"conv1.weight": np.zeros((1,))}), "ModelError", "missing"),
        (dict(model="/nonexistent/model"), "ModelError", "does not exist"),
        (
            dict(data=np.zeros((8, 3, 28, 28), np.float32)),
            "NeonsignValueError",
            r"\(N, 3, 32, 32\)",
        ),
        (dict(data=np.zeros((2, 3, 32, 32), np.float32)), "NeonsignValueError", "fewer than batch"),
    ],
)
def test_profile_rejects_bad_input(kwargs, exc, match):
    from neonsign import errors
    from neonsign.profiler import list_backends, profile

    available = [b.name for b in list_backends(include_unavailable=False)]
    if not available:
        pytest.skip("no profiler backend here (neither torch nor the native engine)")
    backend = "torch" if "torch" in available else available[0]
    kwargs = {k: (v.replace("torch", backend) if k == "backends" else v) for k, v in kwargs.items()}
    args = dict(backends=backend, batch=4, threads=1, repeats=1, warmup=0, aten=False)
    args.update(kwargs)
    with pytest.raises(getattr(errors, exc), match=match):
        profile(**args)


def test_model_file_with_wrong_shapes_is_a_model_error(tmp_path):
    from safetensors.numpy import save_file

    from neonsign.errors import ModelError
    from neonsign.profiler import load_state_dict, random_state_dict

    sd = random_state_dict(0)
    sd["fc1.weight"] = np.zeros((128, 100), np.float32)
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ModelError, match="fc1.weight.*expected"):
        load_state_dict(path)
    good = random_state_dict(1)
    save_file(good, str(path))
    loaded, source = load_state_dict(path)
    np.testing.assert_array_equal(loaded["conv2.weight"], good["conv2.weight"])


# ---------------------------------------------------------------------------------------------
# native engine backends (when the engine is built)


@pytest.mark.skipif(
    not _native_available(), reason="neonsign.engine is not built on this branch yet"
)
def test_native_backends_match_torch_and_switch_kernels_through_the_recorder():
    pytest.importorskip("torch")
    from neonsign.engine import Engine
    from neonsign.profiler import profile

    kernels = [f"native-{k}" for k in Engine.available_kernels()]
    rep = profile(backends=["torch", "native", *kernels], **SMALL)
    for name in ["native", *kernels]:
        b = rep.backend(name)
        assert b["accuracy_check"]["top1_agreement"] == 1.0
        assert b["accuracy_check"]["max_abs_logit_diff"] < 1e-3
        assert len(b["layers"]) > 1  # engine timers attached under `forward`
        if name != "native":
            assert b["settings"]["kernel"] == name.removeprefix("native-")


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_lists_backends(capsys):
    from neonsign.cli import main

    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "torch-onednn-off" in out and "native" in out
    assert main(["profile", "--list-backends"]) == 0


@pytest.mark.torch
def test_cli_profile_then_compare_and_gate(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    from neonsign.cli import main

    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    argv = [
        "profile",
        "--backends",
        "torch,torch-onednn-off",
        "--batch",
        "4",
        "--threads",
        "1",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--quiet",
        "--json",
        str(out_json),
        "--markdown",
        str(out_md),
    ]
    assert main(argv) == 0
    assert out_json.is_file() and out_md.read_text().startswith("## neonsign profile")
    assert "## neonsign profile" in summary.read_text()
    assert (
        main(
            [
                "compare",
                str(out_json),
                str(out_json),
                "--fail-if-slower",
                "5",
                "--layers",
                "conv2,fc1",
            ]
        )
        == 0
    )
    assert "passed" in capsys.readouterr().out
    rc = main(
        ["compare", str(out_json), "--base-backend", "torch-onednn-off", "--new-backend", "torch"]
    )
    assert rc == 0 and "went from" in capsys.readouterr().out
    assert main(["compare", str(out_json)]) == 2  # one report needs the two backends
    assert "## neonsign compare" in summary.read_text()


def test_cli_compare_exit_code_on_regression(tmp_path, capsys):
    from neonsign.cli import main

    base, new = tmp_path / "base.json", tmp_path / "new.json"
    _fake_report().save_json(base)
    slow = _fake_report()
    for b in slow.data["backends"]:
        b["layers"][1]["self_ns_per_forward"]["median"] *= 1.3
    slow.save_json(new)
    assert main(["compare", str(base), str(new), "--fail-if-slower", "10"]) == 0  # total same
    out_json = tmp_path / "cmp.json"
    assert (
        main(
            [
                "compare",
                str(base),
                str(new),
                "--fail-if-slower",
                "10",
                "--layers",
                "conv2",
                "--json",
                str(out_json),
            ]
        )
        == 1
    )
    assert "FAILED" in capsys.readouterr().out
    import json

    verdict = json.loads(out_json.read_text())
    assert verdict["failed"] and any("conv2" in r for r in verdict["regressions"])


def test_report_plot_stacks_layers_per_backend():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = _fake_report().plot()
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert heights == [3.0, 3.6, 5.1, 9.0]  # conv2 and the rest of forward, in ms, per backend
    assert [t.get_text() for t in ax.get_xticklabels()] == ["torch", "torch-onednn-off"]


def test_model_loads_from_a_pth_file(tmp_path):
    torch = pytest.importorskip("torch")
    from neonsign.errors import ModelError
    from neonsign.profiler import load_state_dict, random_state_dict

    sd = random_state_dict(3)
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / "m.pth")
    loaded, source = load_state_dict(tmp_path / "m.pth")
    assert source.endswith("m.pth")
    np.testing.assert_array_equal(loaded["conv1.weight"], sd["conv1.weight"])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pth"):
        load_state_dict(tmp_path / "junk.pth")


def test_profile_reads_inputs_from_a_gtsrb_root(tmp_path):
    synth = pytest.importorskip("neonsign.synth")
    pytest.importorskip("neonsign.data")
    from neonsign.profiler import list_backends, profile

    available = [b.name for b in list_backends(include_unavailable=False)]
    if not available:
        pytest.skip("no profiler backend here (neither torch nor the native engine)")
    from neonsign.artifacts import make_card, save_model
    from neonsign.profiler import random_state_dict

    root = synth.synthesize(
        tmp_path / "gtsrb", n_per_class=2, images_per_track=2, n_test=50, size_range=(15, 40)
    )
    rep = profile(
        data=root, backends=available[:1], batch=16, threads=1, repeats=1, warmup=0, aten=False
    )
    s = rep.data["settings"]
    assert not s["random_input"] and "test split" in s["input"]
    assert "random inputs: no data was given" not in rep.data["notes"]
    # a model directory: its weights are used and its card's preprocessing applies to the data
    sd = random_state_dict(5)
    model = save_model(tmp_path / "model", sd, make_card(preprocessing={"roi": True}))
    rep = profile(
        model=model,
        data=root,
        backends=available[:1],
        batch=16,
        threads=1,
        repeats=1,
        warmup=0,
        aten=False,
    )
    s = rep.data["settings"]
    assert s["model"] == str(model) and not s["random_weights"]
    assert "'roi': True" in s["input"]
    assert "random weights: no model was given" not in rep.data["notes"]
    with pytest.raises(ValueError, match="fewer than batch"):
        profile(
            data=root, backends=available[:1], batch=64, threads=1, repeats=1, warmup=0, aten=False
        )


def test_flop_count_matches_the_model_arithmetic():
    from neonsign.profiler import _flop_per_image

    macs = 30 * 30 * 32 * 3 * 9 + 13 * 13 * 64 * 32 * 9 + 2304 * 128 + 128 * 43
    assert _flop_per_image() == 2 * macs  # about 8.4 MFLOP per image


@needs_subprocess
def test_profiler_and_lazy_profile_do_not_import_torch():
    from support import torch_imported_after

    code = "import neonsign, neonsign.profiler, neonsign.profile_report; neonsign.profile"
    assert not torch_imported_after(code)


def test_without_torch_only_native_backends_run(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    from neonsign.profiler import list_backends, profile

    torch_backends = [b for b in list_backends() if b.family == "torch"]
    assert torch_backends and not any(b.available for b in torch_backends)
    assert all("PyTorch is not installed" in b.reason for b in torch_backends)
    rep = profile(batch=2, threads=1, repeats=1, warmup=0)
    assert rep.backends and all(n.startswith("native") for n in rep.backends)
    assert rep.data["machine"]["torch"] is None
    assert rep.data["backends"][0]["aten_kernels"] == []


# ---------------------------------------------------------------------------------------------
# The steps of profile(), one by one


def test_profile_request_validates_and_names_the_bad_argument():
    from neonsign.errors import NeonsignValueError
    from neonsign.profiler import ProfileRequest

    req = ProfileRequest.create(" native , native", batch=2, threads=1, repeats=1, warmup=0)
    assert req.names == ["native"] and req.baseline == "native" and not req.uses_torch
    assert ProfileRequest.create("native").threads >= 1  # default: one per CPU
    bad = [
        ({"batch": 0}, "batch must be an integer >= 1"),
        ({"repeats": True}, "repeats must be an integer >= 1"),
        ({"warmup": -1}, "warmup must be an integer >= 0"),
        ({"threads": 300}, r"threads must be an integer in \[1, 256\], got 300"),
        ({"threads": 2.0}, "threads must be an integer"),
        ({"order": "random"}, "order must be 'interleaved' or 'sequential'"),
        ({"baseline": "torch"}, "baseline 'torch' is not among the profiled backends"),
    ]
    for kwargs, message in bad:
        with pytest.raises(NeonsignValueError, match=message):
            ProfileRequest.create("native", **kwargs)
    with pytest.raises(NeonsignValueError, match="unknown backend"):
        ProfileRequest.create("cuda")


def test_schedule_interleaves_or_runs_backends_one_after_another():
    from neonsign.profiler import schedule

    assert schedule(["a", "b"], 2, "interleaved") == [(0, "a"), (0, "b"), (1, "a"), (1, "b")]
    assert schedule(["a", "b"], 2, "sequential") == [(0, "a"), (1, "a"), (0, "b"), (1, "b")]


def test_pool_threads_restores_the_previous_count_even_on_error():
    from neonsign import _native
    from neonsign.profiler import pool_threads

    before = _native.get_threads()
    target = 1 if before != 1 else 2
    with pool_threads(target):
        assert _native.get_threads() == target
    assert _native.get_threads() == before
    with pytest.raises(KeyError), pool_threads(target):
        raise KeyError("boom")
    assert _native.get_threads() == before


def test_pool_threads_without_torch_is_a_missing_dependency(monkeypatch):
    import sys

    from neonsign import _native
    from neonsign.errors import MissingDependencyError
    from neonsign.profiler import pool_threads

    before = _native.get_threads()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError) as info, pool_threads(1, torch_too=True):
        pass
    assert isinstance(info.value, ImportError)
    assert "pip install 'neonsign[torch]'" in str(info.value)
    assert _native.get_threads() == before


def test_runners_schedule_and_figures_step_by_step():
    from neonsign.profiler import (
        FORWARD,
        ProfileRequest,
        _load_inputs,
        backend_figures,
        build_runners,
        pool_threads,
        random_state_dict,
        run_schedule,
    )

    req = ProfileRequest.create("native", batch=4, threads=1, repeats=3, warmup=2)
    x, _ = _load_inputs(None, req.batch, req.split, req.seed)
    with pool_threads(req.threads):
        runners = build_runners(req, random_state_dict(0))
        logits = run_schedule(runners, x, req)
    assert list(runners) == ["native"] and logits["native"].shape == (4, 43)
    figures = backend_figures(runners["native"].rec, req.repeats)
    assert len(figures["total"]["per_repeat_ns"]) == 3  # warm-up passes are not recorded
    forward = next(r for r in figures["layers"] if r["name"] == FORWARD)
    assert forward["calls"] == 3 and forward["total_ns_total"] == sum(
        figures["total"]["per_repeat_ns"]
    )
    with pytest.raises(RuntimeError, match="expected 4 forward spans, recorded 3"):
        backend_figures(runners["native"].rec, 4)


# ---------------------------------------------------------------------------------------------
# The error boundary: every file a user names fails as a NeonsignError subclass


def _assert_boundary(info, neonsign_class, builtin_class, path):
    from neonsign.errors import NeonsignError

    assert isinstance(info.value, NeonsignError) and isinstance(info.value, neonsign_class)
    assert isinstance(info.value, builtin_class)
    assert str(path) in str(info.value)


def _report():
    from neonsign.profiler import profile

    return profile(backends="native", batch=2, threads=1, repeats=1, warmup=0, aten=False)


def test_load_and_compare_on_a_missing_or_malformed_report(tmp_path):
    from neonsign.errors import (
        NeonsignFileNotFoundError,
        NeonsignIsADirectoryError,
        NeonsignValueError,
    )
    from neonsign.profile_report import ProfileReport, compare

    missing = tmp_path / "missing.json"
    with pytest.raises(NeonsignFileNotFoundError) as info:
        ProfileReport.load(missing)
    _assert_boundary(info, NeonsignFileNotFoundError, FileNotFoundError, missing)
    with pytest.raises(NeonsignFileNotFoundError) as info:
        compare(missing, missing)
    _assert_boundary(info, NeonsignFileNotFoundError, FileNotFoundError, missing)
    with pytest.raises(NeonsignIsADirectoryError) as info:
        ProfileReport.load(tmp_path)
    _assert_boundary(info, NeonsignIsADirectoryError, IsADirectoryError, tmp_path)
    for name, content in (("broken.json", b'{"schema_version": 1,'), ("binary.json", b"\xff\xfe")):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(NeonsignValueError, match="not valid JSON") as info:
            ProfileReport.load(bad)
        _assert_boundary(info, NeonsignValueError, ValueError, bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"schema_version": 1, "machine": {}}')
    with pytest.raises(NeonsignValueError, match="missing field 'settings'") as info:
        compare(wrong, wrong)
    _assert_boundary(info, NeonsignValueError, ValueError, wrong)


def test_saving_a_report_on_a_full_disk_or_a_bad_destination(tmp_path, monkeypatch):
    from pathlib import Path

    from neonsign.errors import DiskFullError, NeonsignNotADirectoryError, NeonsignPermissionError
    from neonsign.profile_report import compare

    report = _report()
    comparison = compare(report, report)
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    for save in (report.save_json, report.save_markdown, comparison.save_json):
        with pytest.raises(DiskFullError) as info:
            save(full)
        _assert_boundary(info, DiskFullError, OSError, full)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(NeonsignNotADirectoryError) as info:
        report.save_json(a_file / "r.json")
    _assert_boundary(info, NeonsignNotADirectoryError, NotADirectoryError, a_file / "r.json")

    # a read-only destination (chmod does not stop root, so the refusal is injected)
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_text", refuse)
    for save in (report.save_json, comparison.save_markdown):
        with pytest.raises(NeonsignPermissionError) as info:
            save(tmp_path / "ro.json")
        _assert_boundary(info, NeonsignPermissionError, PermissionError, tmp_path / "ro.json")


def test_profile_on_a_data_set_with_one_image_missing(synth_root, tmp_path):
    import shutil

    from neonsign.errors import NeonsignFileNotFoundError
    from neonsign.profiler import profile

    root = tmp_path / "gtsrb"
    shutil.copytree(synth_root, root)
    images = sorted((root / "Final_Test" / "Images").glob("*.ppm"))
    images[3].unlink()
    with pytest.raises(NeonsignFileNotFoundError) as info:
        profile(data=root, backends="native", batch=len(images), threads=1, repeats=1, warmup=0)
    _assert_boundary(info, NeonsignFileNotFoundError, FileNotFoundError, images[3])
    assert str(root) in str(info.value)
