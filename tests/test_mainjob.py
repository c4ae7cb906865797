"""The main job: stages end to end on the synthetic session data set."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from neonsign import artifacts  # noqa: E402
from neonsign.app.pipeline import MAIN_JOB, run_main_job  # noqa: E402


def test_main_job_runs_every_stage_and_never_overwrites(synth, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    step_summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    ctx = run_main_job(data=synth, runs_dir=runs, epochs=1, threads=1, backend="torch", quiet=True)
    run_dir = ctx.run_dir
    assert run_dir.parent == runs
    assert set(ctx.stage_seconds) == {stage.name for stage in MAIN_JOB}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["split"] == "test" and summary["n_images"] == 86
    assert 0 <= summary["accuracy"] <= 1
    test = json.loads((run_dir / "test.json").read_text())
    assert test["accuracy"] == summary["accuracy"] and len(test["per_class_accuracy"]) == 43
    # both framings of the same images (the gate checks each): the card's framing is the top level
    assert set(test["framings"]) == {"roi", "whole"}
    assert test["framings"][test["framing"]]["accuracy"] == test["accuracy"]
    assert {f["n_images"] for f in test["framings"].values()} == {86}
    assert (run_dir / "confusion.png").exists()
    artifacts.load_model(run_dir / "model")
    out = capsys.readouterr().out
    assert "accuracy" in out and str(run_dir) in out
    assert [stage.name for stage in MAIN_JOB][-4:] == ["test", "profile", "compare", "report"]
    assert {"profile", "compare"} <= set(ctx.stage_seconds)

    # profile: the trained model on held-out images, every available backend, one report
    from neonsign.backends import list_backends
    from neonsign.profile_report import ProfileReport

    report = ProfileReport.load(run_dir / "profile.json")
    available = [b.name for b in list_backends(include_unavailable=False)]
    assert report.backends == available
    assert {"torch", "torch-onednn-off", "torch-channels-last"} <= set(report.backends)
    settings = report.data["settings"]
    assert settings["model"] == str(run_dir / "model") and not settings["random_weights"]
    assert not settings["random_input"] and settings["batch"] == 64 and settings["threads"] == 1
    for name in report.backends:  # fp32 backends classify the held-out batch alike
        if name != "torch-bf16":
            assert report.backend(name)["accuracy_check"]["top1_agreement"] == 1.0
    assert summary["profile_median_ms"] == {b: report.total_ms(b) for b in report.backends}

    # compare: torch-onednn-off -> torch, and the fastest libtorch backend -> native
    comp = json.loads((run_dir / "compare.json").read_text())["comparisons"]
    pairs = [{(r["base_backend"], r["new_backend"]) for r in c["rows"]} for c in comp]
    assert pairs[0] == {("torch-onednn-off", "torch")}
    torch_names = [b for b in report.backends if b.startswith("torch")]
    if "native" in report.backends:
        best = min(torch_names, key=report.total_ms)
        assert pairs[1] == {(best, "native")} and len(comp) == 2
    total = next(r for r in comp[0]["rows"] if r["layer"] == "total")
    assert total["base_ns"] == report.backend("torch-onednn-off")["total"]["median_ns"]
    assert "Self CPU time total (median per forward) went from" in comp[0]["headline"][0]
    assert summary["compare"] == [h for c in comp for h in c["headline"]]

    # the job ends with the tables; summary.md also went to $GITHUB_STEP_SUMMARY
    assert (
        out.index("== summary") < out.index("torch-onednn-off -> torch") < out.index("artifacts in")
    )
    assert comp[0]["headline"][0] in out
    md = (run_dir / "summary.md").read_text()
    assert "## neonsign profile" in md and "## neonsign compare" in md and "accuracy" in md
    assert step_summary.read_text() == md + "\n"
    # the per-layer pictures (issue 19) beside summary.md, linked from it
    for name in ("profile.png", "compare.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}]({name})" in md
    ctx2 = run_main_job(data=synth, runs_dir=runs, epochs=1, threads=1, backend="torch", quiet=True)
    assert ctx2.run_dir != run_dir and (run_dir / "summary.json").exists()
