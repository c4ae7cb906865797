"""neonsign.data: layouts, torchvision-compatible order and labels, loading, checksums, tracks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SYNTH_PER_CLASS, SYNTH_PER_TRACK, SYNTH_TEST, real_gtsrb_root
from neonsign import cli, data
from neonsign.errors import (
    AnnotationError,
    DatasetNotFoundError,
    DecodeError,
    NeonsignFileNotFoundError,
    NeonsignValueError,
)

N_TRAIN = 43 * SYNTH_PER_CLASS


# ------------------------------------------------------------------------------------------------
# Building every layout from the synthetic (GTSRB/-entered) root


def _copy_train(src: Path, dst: Path, with_csv: bool = True) -> None:
    ignore = None if with_csv else shutil.ignore_patterns("*.csv")
    shutil.copytree(src / "Final_Training" / "Images", dst, ignore=ignore)


def _copy_test(src: Path, images_dst: Path, labels_dst: Path) -> None:
    shutil.copytree(src / "Final_Test" / "Images", images_dst)
    labels_dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "GT-final_test.csv", labels_dst)


@pytest.fixture(scope="module")
def layouts(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Roots of each layout users end up with, all holding the same synthetic images."""
    base = tmp_path_factory.mktemp("layouts")
    out = {"entered": synth_root}
    # the official archives extracted into one folder
    official = base / "official"
    _copy_train(synth_root, official / "GTSRB" / "Final_Training" / "Images")
    _copy_test(
        synth_root, official / "GTSRB" / "Final_Test" / "Images", official / "GT-final_test.csv"
    )
    out["official"] = official
    # GTSRB-Training_fixed.zip: GTSRB/Training/000NN/ without CSVs
    fixed = base / "fixed"
    _copy_train(synth_root, fixed / "GTSRB" / "Training", with_csv=False)
    out["fixed"] = fixed
    # torchvision's root/gtsrb/...
    tv = base / "tv"
    _copy_train(synth_root, tv / "gtsrb" / "GTSRB" / "Training", with_csv=False)
    _copy_test(
        synth_root,
        tv / "gtsrb" / "GTSRB" / "Final_Test" / "Images",
        tv / "gtsrb" / "GT-final_test.csv",
    )
    out["torchvision"] = tv
    # GTSRB/ entered, labels inside Final_Test/
    entered2 = base / "entered2"
    _copy_test(
        synth_root,
        entered2 / "Final_Test" / "Images",
        entered2 / "Final_Test" / "GT-final_test.csv",
    )
    out["entered-labels-in-final-test"] = entered2
    return out


def _torchvision_train_samples(train_folder: Path) -> list[tuple[str, int]]:
    """torchvision.datasets.GTSRB(split="train")'s samples, re-implemented as it does it:
    make_dataset(folder, extensions=(".ppm",)) -- classes = sorted folder names, files of each
    class from a sorted os.walk, sorted by name."""
    classes = sorted(e.name for e in os.scandir(train_folder) if e.is_dir())
    samples = []
    for idx, cls in enumerate(classes):
        for dirpath, _, fnames in sorted(os.walk(train_folder / cls, followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(".ppm"):
                    samples.append((os.path.join(dirpath, fname), idx))
    return samples


def _torchvision_test_samples(base: Path, images: Path) -> list[tuple[str, int]]:
    import csv

    with open(base / "GT-final_test.csv") as f:
        return [
            (str(images / row["Filename"]), int(row["ClassId"]))
            for row in csv.DictReader(f, delimiter=";", skipinitialspace=True)
        ]


# ------------------------------------------------------------------------------------------------
# Class names


def test_class_names() -> None:
    assert len(data.CLASS_NAMES) == data.NUM_CLASSES == 43
    assert data.class_name(0) == "Speed limit (20km/h)"
    assert data.class_name(14) == "Stop"
    assert data.class_name(42) == "End of no passing by vehicles over 3.5 metric tons"
    assert data.class_name(np.int64(13)) == "Yield"
    for bad in (-1, 43, 1.0, True, "3"):
        with pytest.raises(NeonsignValueError):
            data.class_name(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Layout detection


@pytest.mark.parametrize(
    "name, layout, rel",
    [
        ("entered", "official-entered", "Final_Training/Images"),
        ("official", "official", "GTSRB/Final_Training/Images"),
        ("fixed", "official-fixed", "GTSRB/Training"),
        ("torchvision", "torchvision", "gtsrb/GTSRB/Training"),
    ],
)
def test_find_train_split_in_every_layout(layouts, name, layout, rel) -> None:
    spec = data.find_split(layouts[name], "train")
    assert spec.layout == layout
    assert spec.images_dir == layouts[name] / rel
    assert [d.name for d in spec.class_dirs] == [f"{i:05d}" for i in range(43)]


@pytest.mark.parametrize(
    "name, rel_images, rel_csv",
    [
        ("entered", "Final_Test/Images", "GT-final_test.csv"),
        ("official", "GTSRB/Final_Test/Images", "GT-final_test.csv"),
        ("torchvision", "gtsrb/GTSRB/Final_Test/Images", "gtsrb/GT-final_test.csv"),
        ("entered-labels-in-final-test", "Final_Test/Images", "Final_Test/GT-final_test.csv"),
    ],
)
def test_find_test_split_in_every_layout(layouts, name, rel_images, rel_csv) -> None:
    spec = data.find_split(layouts[name], "test")
    assert spec.images_dir == layouts[name] / rel_images
    assert spec.labels_csv == layouts[name] / rel_csv


def test_pointing_inside_the_data_set_works(synth_root: Path) -> None:
    assert data.find_split(synth_root / "Final_Training", "train").layout == "class-folders"
    assert (
        data.find_split(synth_root / "Final_Training" / "Images", "train").layout == "class-folders"
    )


def test_nothing_found_lists_every_place_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as exc:
        data.find_split(tmp_path, "train")
    msg = str(exc.value)
    for rel in (
        "GTSRB/Final_Training/Images",
        "GTSRB/Training",
        "Final_Training/Images",
        "gtsrb/GTSRB/Training",
    ):
        assert str(tmp_path / rel) in msg
    with pytest.raises(DatasetNotFoundError) as exc:
        data.find_split(tmp_path, "test")
    for rel in ("GTSRB/Final_Test/Images", "Final_Test/Images", "gtsrb/GTSRB/Final_Test/Images"):
        assert str(tmp_path / rel) in str(exc.value)
    with pytest.raises(DatasetNotFoundError, match="not a directory"):
        data.find_split(tmp_path / "missing", "train")
    with pytest.raises(NeonsignValueError, match="split"):
        data.find_split(tmp_path, "validation")


def test_test_images_without_labels_say_where_labels_were_looked_for(synth_root, tmp_path) -> None:
    shutil.copytree(synth_root / "Final_Test", tmp_path / "Final_Test")
    with pytest.raises(DatasetNotFoundError) as exc:
        data.find_split(tmp_path, "test")
    assert "GT-final_test.csv" in str(exc.value)
    assert str(tmp_path / "Final_Test" / "Images" / "GT-final_test.csv") in str(exc.value)
    assert str(tmp_path / "GT-final_test.csv") in str(exc.value)


# ------------------------------------------------------------------------------------------------
# Loading: torchvision order/labels, all layouts identical


def test_train_order_and_labels_match_torchvision(layouts) -> None:
    for name in ("entered", "official", "fixed", "torchvision"):
        spec = data.find_split(layouts[name], "train")
        _, labels, meta = data.load_split(layouts[name], "train", dtype="uint8", limit=None)
        expected = _torchvision_train_samples(spec.images_dir)
        assert [str(p) for p in meta.paths] == [p for p, _ in expected], name
        assert labels.tolist() == [c for _, c in expected], name
        assert labels.dtype == np.int64


def test_test_order_and_labels_match_torchvision(layouts) -> None:
    root = layouts["torchvision"]
    _, labels, meta = data.load_split(root, "test", dtype="uint8")
    expected = _torchvision_test_samples(
        root / "gtsrb", root / "gtsrb" / "GTSRB" / "Final_Test" / "Images"
    )
    assert [str(p) for p in meta.paths] == [p for p, _ in expected]
    assert labels.tolist() == [c for _, c in expected]
    assert len(labels) == SYNTH_TEST
    assert meta.track_ids == (None,) * SYNTH_TEST


def test_every_layout_loads_the_same_data(layouts) -> None:
    sums = {
        name: data.load_split(layouts[name], "train", dtype="uint8")[2].checksum
        for name in ("entered", "official", "fixed", "torchvision")
    }
    assert len(set(sums.values())) == 1, sums
    tests = {
        name: data.load_split(layouts[name], "test", dtype="uint8")[2].checksum
        for name in ("entered", "official", "torchvision", "entered-labels-in-final-test")
    }
    assert len(set(tests.values())) == 1, tests


def test_meta_describes_every_row(synth_root: Path) -> None:
    images, labels, meta = data.load_split(synth_root, "train", dtype="uint8")
    assert images.shape == (N_TRAIN, 32, 32, 3) and images.dtype == np.uint8
    assert len(meta) == N_TRAIN and meta.layout == "official-entered"
    assert meta.class_counts.tolist() == [SYNTH_PER_CLASS] * 43
    assert set(meta.track_ids) == set(range(SYNTH_PER_CLASS // SYNTH_PER_TRACK))
    # width/height/roi come from the CSV and agree with the files themselves
    for i in (0, 17, N_TRAIN - 1):
        with Image.open(meta.paths[i]) as im:
            assert im.size == (meta.widths[i], meta.heights[i])
        x1, y1, x2, y2 = meta.rois[i]
        assert 0 <= x1 < x2 < meta.widths[i] and 0 <= y1 < y2 < meta.heights[i]
    assert meta.paths[0].name == "00000_00000.ppm" and labels[0] == 0 and labels[-1] == 42
    summary = json.loads(json.dumps(meta.to_dict()))
    assert summary["images"] == N_TRAIN and summary["tracks"] == 43 * 2


def test_without_csv_sizes_come_from_headers_and_roi_is_the_whole_image(layouts) -> None:
    _, _, with_csv = data.load_split(layouts["entered"], "train", dtype="uint8")
    _, _, no_csv = data.load_split(layouts["fixed"], "train", dtype="uint8")
    np.testing.assert_array_equal(no_csv.widths, with_csv.widths)
    np.testing.assert_array_equal(no_csv.heights, with_csv.heights)
    np.testing.assert_array_equal(no_csv.rois, -1)  # the loader's "whole image"
    full, _, _ = data.load_split(layouts["fixed"], "train", dtype="uint8", size=20)
    roi, _, _ = data.load_split(layouts["fixed"], "train", dtype="uint8", size=20, roi=True)
    np.testing.assert_array_equal(full, roi)


def test_float32_is_normalised_uint8_in_nchw(synth_root: Path) -> None:
    u8, _, _ = data.load_split(synth_root, "train", dtype="uint8", limit=50)
    f32, _, _ = data.load_split(
        synth_root, "train", dtype="float32", limit=50, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)
    )
    assert f32.shape == (50, 3, 32, 32) and f32.dtype == np.float32 and f32.flags.c_contiguous
    mean = np.array([0.5, 0.4, 0.3], np.float32)[:, None, None]
    std = np.array([0.2, 0.25, 0.3], np.float32)[:, None, None]
    ref = (u8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std
    np.testing.assert_allclose(f32, ref, atol=1e-5)


def test_roi_crop_matches_pillow(synth_root: Path) -> None:
    full, _, _ = data.load_split(synth_root, "train", dtype="uint8", size=24)
    cropped, _, meta = data.load_split(synth_root, "train", dtype="uint8", size=24, roi=True)
    assert meta.roi and not np.array_equal(full, cropped)
    for i in (0, 123, N_TRAIN - 1):
        x1, y1, x2, y2 = (int(v) for v in meta.rois[i])
        with Image.open(meta.paths[i]) as im:
            ref = np.asarray(
                im.convert("RGB").crop((x1, y1, x2 + 1, y2 + 1)).resize((24, 24), Image.BILINEAR)
            )
        diff = np.abs(cropped[i].astype(int) - ref.astype(int))
        assert diff.max() <= 1, (i, diff.max())


def test_checksum_is_the_data_version(synth_root: Path) -> None:
    _, _, one = data.load_split(synth_root, "train", dtype="uint8", threads=1)
    _, _, two = data.load_split(synth_root, "train", dtype="float32", threads=2)
    assert one.checksum == two.checksum and len(one.checksum) == 64
    _, _, roi = data.load_split(synth_root, "train", dtype="uint8", roi=True)
    _, _, small = data.load_split(synth_root, "train", dtype="uint8", size=16)
    assert len({one.checksum, roi.checksum, small.checksum}) == 3


def test_checksum_covers_labels() -> None:
    images = np.zeros((3, 4, 4, 3), np.uint8)
    a = data.split_checksum(images, np.array([0, 1, 2]), size=4, roi=False)
    b = data.split_checksum(images, np.array([0, 1, 3]), size=4, roi=False)
    assert a != b
    with pytest.raises(NeonsignValueError):
        data.split_checksum(images.astype(np.float32), np.array([0, 1, 2]), size=4, roi=False)


def test_limit_keeps_every_class(synth_root: Path) -> None:
    images, labels, meta = data.load_split(synth_root, "train", dtype="uint8", limit=86)
    assert len(images) == len(labels) == len(meta.paths) == 86
    assert set(labels.tolist()) == set(range(43))


@pytest.mark.parametrize(
    "kwargs", [dict(dtype="float64"), dict(size=0), dict(size=True), dict(limit=0), dict(limit=2.5)]
)
def test_bad_arguments(synth_root: Path, kwargs) -> None:
    with pytest.raises(NeonsignValueError):
        data.load_split(synth_root, "train", **kwargs)


# ------------------------------------------------------------------------------------------------
# Bad files and annotations


@pytest.fixture
def damaged_root(synth_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "damaged"
    shutil.copytree(synth_root / "Final_Training", root / "Final_Training")
    bad = root / "Final_Training" / "Images" / "00007" / "00001_00002.ppm"
    bad.write_bytes(b"P6\n32 32\n255\n" + b"\x00" * 100)  # truncated pixel data
    return root, bad


def test_corrupt_file_is_named(damaged_root) -> None:
    root, bad = damaged_root
    with pytest.raises(DecodeError) as exc:
        data.load_split(root, "train", dtype="uint8")
    assert str(bad) in str(exc.value) or bad.name in str(exc.value)


def test_skip_bad_reports_the_file_and_zeroes_its_row(damaged_root) -> None:
    root, bad = damaged_root
    images, labels, meta = data.load_split(root, "train", dtype="uint8", skip_bad=True)
    assert len(images) == N_TRAIN
    assert [(row, Path(path)) for row, path, _ in meta.errors] == [(7 * SYNTH_PER_CLASS + 7, bad)]
    row = meta.errors[0][0]
    assert meta.paths[row] == bad and labels[row] == 7
    assert not images[row].any() and images[row - 1].any()
    f32, _, fmeta = data.load_split(root, "train", dtype="float32", skip_bad=True)
    assert fmeta.checksum == meta.checksum
    assert not f32[row].any() and f32[row - 1].any()


def test_missing_file_listed_in_csv(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "missing"
    shutil.copytree(synth_root / "Final_Training", root / "Final_Training")
    gone = root / "Final_Training" / "Images" / "00003" / "00000_00004.ppm"
    gone.unlink()
    with pytest.raises(FileNotFoundError) as exc:
        data.load_split(root, "train", dtype="uint8")
    assert "00000_00004.ppm" in str(exc.value)
    assert isinstance(exc.value, NeonsignFileNotFoundError)
    _, _, meta = data.load_split(root, "train", dtype="uint8", skip_bad=True)
    assert [Path(p) for _, p, _ in meta.errors] == [gone]


def test_class_folder_and_csv_that_differ_are_listed_row_by_row(
    synth_root: Path, tmp_path: Path
) -> None:
    """A class folder whose CSV lists every image once, in order, is listed by column; one that
    differs (a file the CSV does not name, a name listed twice) row by row -- both give every
    file once, in name order, a listed row's CSV values (the last, for a name listed twice),
    a header-sized whole-image row for the unlisted file, and its track (None off-pattern)."""
    root = tmp_path / "r"
    shutil.copytree(synth_root / "Final_Training", root / "Final_Training")
    _, _, before = data.load_split(root, "train", dtype="uint8")
    folder = root / "Final_Training" / "Images" / "00002"
    first = sorted(folder.glob("*.ppm"))[0]
    shutil.copy(first, folder / "zz_extra.ppm")  # on disk only: sorts last in its class
    csv_path = folder / "GT-00002.csv"
    lines = csv_path.read_text().splitlines()
    name, w, h, *_, cls = lines[1].split(";")
    lines.append(f"{name};{w};{h};0;0;1;1;{cls}")  # listed twice: the last row counts
    csv_path.write_text("\n".join(lines) + "\n")
    _, _, after = data.load_split(root, "train", dtype="uint8")

    extra = after.paths.strings().index(str(folder / "zz_extra.ppm"))
    keep = np.delete(np.arange(len(after)), extra)
    assert [after.paths[i] for i in keep] == list(before.paths)
    assert after.track_ids[extra] is None and after.labels[extra] == 2
    assert tuple(after.rois[extra]) == (-1, -1, -1, -1)
    with Image.open(first) as im:
        assert (after.widths[extra], after.heights[extra]) == im.size
    dup = after.paths.strings().index(str(folder / name))
    np.testing.assert_array_equal(after.rois[dup], [0, 0, 1, 1])
    rest = keep[keep != dup]
    np.testing.assert_array_equal(after.rois[rest], np.delete(before.rois, dup, axis=0))
    np.testing.assert_array_equal(after.labels[keep], before.labels)
    assert [after.track_ids[i] for i in keep] == list(before.track_ids)


def _rewrite_csv(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


def test_csv_class_disagreeing_with_folder(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "r"
    shutil.copytree(synth_root / "Final_Training", root / "Final_Training")
    csv_path = root / "Final_Training" / "Images" / "00005" / "GT-00005.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] = lines[1].rsplit(";", 1)[0] + ";6"
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match="GT-00005.csv.*ClassId 6.*00005"):
        data.load_split(root, "train")


def test_csv_filename_escaping_its_folder(synth_root: Path, tmp_path: Path) -> None:
    shutil.copytree(synth_root / "Final_Test", tmp_path / "Final_Test")
    csv_path = tmp_path / "GT-final_test.csv"
    shutil.copy(synth_root / "GT-final_test.csv", csv_path)
    _rewrite_csv(csv_path, "00000.ppm", "../../../etc/passwd")
    with pytest.raises(AnnotationError, match="not a plain file name"):
        data.load_split(tmp_path, "test")


def test_test_csv_class_out_of_range_names_row(synth_root: Path, tmp_path: Path) -> None:
    """The test listing checks ClassId by column (NumPy): the first bad row is named."""
    shutil.copytree(synth_root / "Final_Test", tmp_path / "Final_Test")
    csv_path = tmp_path / "GT-final_test.csv"
    lines = (synth_root / "GT-final_test.csv").read_text().splitlines()
    for row in (3, 5):
        lines[row] = lines[row].rsplit(";", 1)[0] + ";43"
    csv_path.write_text("\n".join(lines) + "\n")
    name = lines[3].split(";")[0]
    with pytest.raises(AnnotationError, match=rf"row 3 \({name}\) ClassId 43 is outside 0..42"):
        data.load_split(tmp_path, "test")


def test_unlabelled_test_csv_is_refused(synth_root: Path, tmp_path: Path) -> None:
    shutil.copytree(synth_root / "Final_Test", tmp_path / "Final_Test")
    shutil.copy(
        synth_root / "Final_Test" / "Images" / "GT-final_test.test.csv",
        tmp_path / "GT-final_test.csv",
    )
    with pytest.raises(AnnotationError, match="no ClassId"):
        data.load_split(tmp_path, "test")


# ------------------------------------------------------------------------------------------------
# Track split


def _check_track_split(meta: data.SplitMeta, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    assert train_idx.dtype == val_idx.dtype == np.int64
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.union1d(train_idx, val_idx), np.arange(len(meta)))
    key = [(int(lab), t) for lab, t in zip(meta.labels, meta.track_ids, strict=False)]
    train_tracks = {key[i] for i in train_idx}
    val_tracks = {key[i] for i in val_idx}
    assert not train_tracks & val_tracks


def test_track_split_keeps_tracks_whole(synth_root: Path) -> None:
    _, labels, meta = data.load_split(synth_root, "train", dtype="uint8")
    train_idx, val_idx = data.track_split(meta, val_fraction=0.2, seed=0)
    _check_track_split(meta, train_idx, val_idx)
    # 2 tracks per class -> exactly one goes to validation in every class
    assert np.bincount(labels[val_idx], minlength=43).tolist() == [SYNTH_PER_TRACK] * 43
    again = data.track_split(meta, val_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again[1], val_idx)
    others = [data.track_split(meta, 0.2, seed=s)[1] for s in range(1, 6)]
    assert any(not np.array_equal(o, val_idx) for o in others)
    none_train, none_val = data.track_split(meta, val_fraction=0.0)
    assert none_val.size == 0 and none_train.size == len(meta)


def test_track_split_refuses_test_split_and_bad_fraction(synth_root: Path) -> None:
    _, _, test_meta = data.load_split(synth_root, "test", dtype="uint8", limit=10)
    with pytest.raises(NeonsignValueError, match="track"):
        data.track_split(test_meta)
    _, _, meta = data.load_split(synth_root, "train", dtype="uint8", limit=10)
    for bad in (-0.1, 1.0, "0.2"):
        with pytest.raises(NeonsignValueError):
            data.track_split(meta, val_fraction=bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# CLI


def test_cli_data_info(synth_root: Path, tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "info.json"
    assert cli.main(["data", "info", str(synth_root), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "checksum sha256:" in printed and "Speed limit (20km/h)" in printed
    report = json.loads(out_json.read_text())
    assert report["train"]["images"] == N_TRAIN and report["test"]["images"] == SYNTH_TEST
    _, _, meta = data.load_split(synth_root, "train", dtype="uint8")
    assert report["train"]["checksum"] == meta.checksum


def test_cli_data_info_fails_naming_bad_file(damaged_root, capsys) -> None:
    root, bad = damaged_root
    assert cli.main(["data", "info", str(root), "--split", "train", "-q"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_cli_data_info_nothing_found(tmp_path: Path, capsys) -> None:
    assert cli.main(["data", "info", str(tmp_path), "--split", "train"]) == 2
    assert "looked for" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# The real training split


@pytest.fixture(scope="module")
def real_root() -> Path:
    root = real_gtsrb_root()
    if root is None:
        pytest.skip(
            "real GTSRB not found: set GTSRB_ROOT or provide ../shared/gtsrb beside the repository"
        )
    return root


@pytest.mark.realdata
def test_real_training_split(real_root: Path) -> None:
    images, labels, meta = data.load_split(real_root, "train", dtype="uint8")
    assert images.shape == (39209, 32, 32, 3)
    assert meta.layout in ("official-entered", "official")
    assert meta.class_counts.min() == 210 and meta.class_counts.max() == 2250
    assert (meta.class_counts > 0).sum() == 43
    assert labels[0] == 0 and labels[-1] == 42
    assert meta.paths[0].name == "00000_00000.ppm"
    i = meta.paths.index(next(p for p in meta.paths if p.parent.name == "00014"))
    assert labels[i] == 14 and data.class_name(int(labels[i])) == "Stop"
    train_idx, val_idx = data.track_split(meta, 0.2, seed=0)
    _check_track_split(meta, train_idx, val_idx)
    assert 0.15 < len(val_idx) / len(meta) < 0.25


def test_unreadable_file_without_csv_is_named_even_with_roi(
    synth_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "fixed"
    _copy_train(synth_root, root / "GTSRB" / "Training", with_csv=False)
    bad = root / "GTSRB" / "Training" / "00002" / "00000_00001.ppm"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DecodeError, match="00000_00001.ppm"):
        data.load_split(root, "train", roi=True, dtype="uint8")
    _, _, meta = data.load_split(root, "train", roi=True, dtype="uint8", skip_bad=True)
    assert [Path(p) for _, p, _ in meta.errors] == [bad]
    row = meta.errors[0][0]
    assert meta.widths[row] == 0 and meta.rois[row].tolist() == [-1, -1, -1, -1]
