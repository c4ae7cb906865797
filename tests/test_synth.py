"""neonsign.synth: official layout, consistent CSVs, tracks, determinism, learnability."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SYNTH_PER_CLASS, SYNTH_PER_TRACK, SYNTH_SIZES, SYNTH_TEST
from neonsign import cli, data
from neonsign.errors import NeonsignValueError
from neonsign.synth import MARKER, render_sign, synthesize


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _read_csv(path: Path) -> list[list[str]]:
    return [line.split(";") for line in path.read_text().splitlines()]


def test_official_layout_with_consistent_csvs(synth_root: Path) -> None:
    images = synth_root / "Final_Training" / "Images"
    assert sorted(p.name for p in images.iterdir()) == [f"{i:05d}" for i in range(43)]
    lo, hi = SYNTH_SIZES
    for class_id in (0, 14, 42):
        folder = images / f"{class_id:05d}"
        rows = _read_csv(folder / f"GT-{class_id:05d}.csv")
        assert rows[0] == [
            "Filename",
            "Width",
            "Height",
            "Roi.X1",
            "Roi.Y1",
            "Roi.X2",
            "Roi.Y2",
            "ClassId",
        ]
        assert len(rows) - 1 == SYNTH_PER_CLASS
        assert sorted(p.name for p in folder.glob("*.ppm")) == [r[0] for r in rows[1:]]
        for name, w, h, x1, y1, x2, y2, cid in rows[1:]:
            w, h, x1, y1, x2, y2 = map(int, (w, h, x1, y1, x2, y2))
            with Image.open(folder / name) as im:
                assert im.format == "PPM" and im.mode == "RGB" and im.size == (w, h)
            assert lo <= w <= hi and lo <= h <= hi
            assert 0 <= x1 < x2 < w and 0 <= y1 < y2 < h and int(cid) == class_id
    test_rows = _read_csv(synth_root / "GT-final_test.csv")
    assert len(test_rows) - 1 == SYNTH_TEST
    assert [r[0] for r in test_rows[1:]] == [f"{i:05d}.ppm" for i in range(SYNTH_TEST)]
    unlabelled = _read_csv(synth_root / "Final_Test" / "Images" / "GT-final_test.test.csv")
    assert [r[:7] for r in test_rows] == unlabelled
    assert (synth_root / MARKER).is_file()


def test_tracks_approach_the_sign(synth_root: Path) -> None:
    rows = _read_csv(synth_root / "Final_Training" / "Images" / "00005" / "GT-00005.csv")[1:]
    tracks: dict[str, list[int]] = {}
    for r in rows:
        tracks.setdefault(r[0][:5], []).append(int(r[2]))
    assert len(tracks) == SYNTH_PER_CLASS // SYNTH_PER_TRACK
    for heights in tracks.values():
        assert heights == sorted(heights) and heights[-1] > heights[0]


def test_deterministic_per_seed(tmp_path: Path) -> None:
    kw = dict(n_per_class=3, images_per_track=2, size_range=(15, 40), n_test=10)
    a = _tree_digest(synthesize(tmp_path / "a", seed=7, **kw))
    b = _tree_digest(synthesize(tmp_path / "b", seed=7, **kw))
    c = _tree_digest(synthesize(tmp_path / "c", seed=8, **kw))
    assert a == b != c
    # writing again into the same folder replaces the old data set with the same bytes
    assert _tree_digest(synthesize(tmp_path / "a", seed=7, **kw)) == a


def test_every_class_renders_distinctly() -> None:
    signs = [np.asarray(render_sign(c, np.random.default_rng(0))) for c in range(43)]
    assert all(s.shape == (128, 128, 4) and s[..., 3].any() for s in signs)
    digests = {hashlib.sha256(s.tobytes()).hexdigest() for s in signs}
    assert len(digests) == 43
    with pytest.raises(NeonsignValueError):
        render_sign(43, np.random.default_rng(0))


def test_size_range_and_partial_tracks(tmp_path: Path) -> None:
    root = synthesize(
        tmp_path, n_per_class=7, images_per_track=3, size_range=(20, 24), with_test=False, seed=3
    )
    images, labels, meta = data.load_split(root, "train", dtype="uint8")
    assert len(labels) == 43 * 7
    assert meta.widths.min() >= 20 and meta.widths.max() <= 24
    assert sorted({t for t in meta.track_ids}) == [0, 1, 2]
    assert not (root / "Final_Test").exists()


def test_refuses_to_mix_with_foreign_data(tmp_path: Path) -> None:
    (tmp_path / "Final_Training" / "Images").mkdir(parents=True)
    with pytest.raises(NeonsignValueError, match="did not write"):
        synthesize(tmp_path, n_per_class=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_per_class=0),
        dict(images_per_track=0),
        dict(size_range=(1, 10)),
        dict(size_range=(30, 20)),
        dict(n_test=-1),
        dict(n_per_class=2.5),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs) -> None:
    with pytest.raises(NeonsignValueError):
        synthesize(tmp_path, **kwargs)


def test_cli_synth(tmp_path: Path) -> None:
    assert (
        cli.main(
            [
                "synth",
                str(tmp_path),
                "--per-class",
                "2",
                "--per-track",
                "2",
                "--test",
                "5",
                "--seed",
                "1",
                "-q",
            ]
        )
        == 0
    )
    _, labels, _ = data.load_split(tmp_path, "test", dtype="uint8")
    assert len(labels) == 5


def test_classes_are_separable_but_not_trivially(synth_root: Path) -> None:
    """A linear classifier (ridge regression on pixels, NumPy only) must beat chance by far on
    held-out tracks, yet stay well short of perfect: the data is neither noise nor trivial."""
    images, labels, meta = data.load_split(synth_root, "train", dtype="uint8", size=16)
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    x = np.hstack([x - x.mean(axis=1, keepdims=True), np.ones((len(x), 1))])
    train_idx, val_idx = data.track_split(meta, val_fraction=0.5, seed=0)
    onehot = np.eye(43)[labels[train_idx]]
    xt = x[train_idx]
    w = np.linalg.solve(xt.T @ xt + 10.0 * np.eye(x.shape[1]), xt.T @ onehot)
    acc = float((np.argmax(x[val_idx] @ w, axis=1) == labels[val_idx]).mean())
    print(f"ridge accuracy on held-out tracks: {acc:.3f}")
    assert 5 / 43 < acc < 0.95, acc
