"""Issue 13, parts 1 and 2 (reporting): training framings from the ROI crop to the whole image,
and accuracy reported per framing by training, ``neonsign test``, the gate and the registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neonsign.errors import NeonsignValueError
from neonsign.framing import ROI_VIEW, WHOLE_VIEW, load_views, random_boxes

torch = pytest.importorskip("torch")


def test_random_boxes_contain_the_roi_and_stay_in_the_image() -> None:
    rng = np.random.default_rng(0)
    n = 500
    w = rng.integers(20, 200, n)
    h = rng.integers(20, 200, n)
    x1, y1 = rng.integers(0, 5, n), rng.integers(0, 5, n)
    rois = np.stack([x1, y1, w - 1 - rng.integers(0, 5, n), h - 1 - rng.integers(0, 5, n)], 1)
    rois[:3] = -1  # unknown ROI: the whole image
    w[3] = 0  # unknown size: the whole image
    boxes = random_boxes(rois, w, h, rng)
    assert boxes.shape == (n, 4) and boxes.dtype == np.int64
    assert (boxes[:4] == -1).all()
    b, r = boxes[4:], rois[4:]
    assert (b[:, :2] >= 0).all() and (b[:, :2] <= r[:, :2]).all()
    assert (b[:, 2] >= r[:, 2]).all() and (b[:, 2] <= w[4:] - 1).all()
    assert (b[:, 3] >= r[:, 3]).all() and (b[:, 3] <= h[4:] - 1).all()
    # the margins spread over the room between the ROI and the border (not all at one end)
    room = (r[:, 0] > 0) & (r[:, 2] < w[4:] - 1)
    assert len(set(b[room, 0] - r[room, 0])) > 1
    with pytest.raises(NeonsignValueError, match="widths"):
        random_boxes(rois, w[:-1], h, rng)


def test_views_are_the_roi_the_whole_image_and_boxes_between(synth_root: Path) -> None:
    from neonsign.data import load_split

    images, _, meta = load_split(synth_root, "train", roi=True, dtype="uint8", limit=60)
    whole, _, _ = load_split(synth_root, "train", roi=False, dtype="uint8", limit=60)
    views = load_views(meta, images, random_views=2, seed=3)
    assert views.images.shape == (4, *images.shape) and views.count == 4
    assert np.array_equal(views.images[ROI_VIEW], images)
    assert np.array_equal(views.images[WHOLE_VIEW], whole)
    assert not np.array_equal(views.images[ROI_VIEW], views.images[WHOLE_VIEW])
    again = load_views(meta, images, random_views=2, seed=3)
    assert np.array_equal(again.images, views.images)  # the boxes come from the seed alone
    # loaded whole: the same views
    _, _, meta_whole = load_split(synth_root, "train", roi=False, dtype="uint8", limit=60)
    from_whole = load_views(meta_whole, whole, random_views=2, seed=3)
    assert np.array_equal(from_whole.images, views.images)


@pytest.fixture(scope="module")
def framed_models(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two short runs on the synthetic data: the default recipe and ``framing="fixed"``."""
    from neonsign.train import train

    root = tmp_path_factory.mktemp("framing_models")
    out: dict[str, Path] = {}
    for kind in ("roi-to-whole", "fixed"):
        res = train(
            synth_root,
            root / kind,
            epochs=3,
            batch_size=32,
            threads=1,
            quiet=True,
            framing=kind,
            framing_views=2,
        )
        assert res.model_dir is not None
        out[kind] = res.model_dir
    return out


def _card(model: Path) -> dict:
    return json.loads((model / "model_card.json").read_text())


def test_card_records_the_training_framing_and_both_accuracies(
    framed_models: dict[str, Path],
) -> None:
    robust, fixed = _card(framed_models["roi-to-whole"]), _card(framed_models["fixed"])
    assert robust["training"]["framing"]["kind"] == "roi-to-whole"
    assert robust["training"]["framing"]["views"] == ["roi", "whole", "random", "random"]
    assert fixed["training"]["framing"] == {"kind": "fixed", "views": ["roi"]}
    for card in (robust, fixed):
        m = card["metrics"]
        assert card["preprocessing"]["roi"] is True  # evaluation framing unchanged
        assert 0 <= m["val_accuracy_roi"] <= 1 and 0 <= m["val_accuracy_whole"] <= 1
        assert m["val_accuracy"] == m["val_accuracy_roi"]
        assert set(m["history"][-1]["val_framings"]) == {"roi", "whole"}
    assert robust["hyperparameters"]["framing"] == "roi-to-whole"
    with pytest.raises(NeonsignValueError, match="framing"):
        from neonsign.train import TrainConfig

        TrainConfig(framing="crop").validate()


def test_registered_metrics_carry_both_framings(framed_models: dict[str, Path]) -> None:
    from neonsign.app.registry import _flat_metrics

    flat = _flat_metrics(_card(framed_models["roi-to-whole"]))
    assert {"val_accuracy", "val_accuracy_roi", "val_accuracy_whole"} <= set(flat)


def test_evaluate_reports_both_framings(framed_models: dict[str, Path], synth_root: Path) -> None:
    from neonsign.evaluate import evaluate, format_summary

    model = framed_models["roi-to-whole"]
    res = evaluate(model, synth_root, split="test", profile=False)
    assert res["framing"] == "roi" and set(res["framings"]) == {"roi", "whole"}
    assert res["accuracy"] == res["framings"]["roi"]["accuracy"]
    whole = evaluate(model, synth_root, split="test", profile=False, roi=False)
    assert whole["framing"] == "whole"
    assert whole["accuracy"] == pytest.approx(res["framings"]["whole"]["accuracy"])
    assert whole["framings"] == res["framings"]
    assert "framings: roi" in format_summary(res)
    alone = evaluate(model, synth_root, split="test", profile=False, framings=False)
    assert "framings" not in alone and alone["accuracy"] == res["accuracy"]


def test_cli_test_prints_and_writes_both_framings(
    framed_models: dict[str, Path], synth_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    args = ["--model", str(framed_models["fixed"]), "--data", str(synth_root), "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "neonsign", "test", *args, "--json", str(out), "--framing", "whole"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "framings: roi" in proc.stdout and "whole" in proc.stdout
    result = json.loads(out.read_text())
    assert result["framing"] == "whole"
    assert result["accuracy"] == result["framings"]["whole"]["accuracy"]


def test_gate_checks_each_framing(framed_models: dict[str, Path], synth_root: Path) -> None:
    from neonsign.app.gate import gate

    robust, fixed = framed_models["roi-to-whole"], framed_models["fixed"]
    verdict = gate(robust, synth_root, champion=str(fixed), min_accuracy=0.0, fail_if_slower=400.0)
    floor, vs = verdict["checks"][:2]
    assert set(floor["framings"]) == {"roi", "whole"} == set(vs["framings"])
    assert set(verdict["candidate"]["framings"]) == {"roi", "whole"}
    assert set(verdict["champion"]["framings"]) == {"roi", "whole"}
    accs = {k: v["accuracy"] for k, v in verdict["candidate"]["framings"].items()}
    low, high = sorted(accs, key=accs.__getitem__)
    if accs[low] < accs[high]:
        # a floor just above the lower framing's accuracy refuses the model on that one alone
        refused = gate(robust, synth_root, min_accuracy=accs[low] + 1e-6, fail_if_slower=400.0)
        assert not refused["accepted"]
        assert not refused["checks"][0]["framings"][low]["passed"]
        assert refused["checks"][0]["framings"][high]["passed"]
        assert f"({low})" in refused["reasons"][0]
