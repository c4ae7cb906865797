"""GTSRB annotation CSV parsing: formats, line ends, BOM, and errors naming file, line, field."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import real_gtsrb_root
from neonsign import errors
from neonsign import preprocess as pp
from neonsign.preprocess import Annotation

TRAIN = (
    "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    "00000_00000.ppm;29;30;5;6;24;25;0\n"
    "00000_00001.ppm;30;30;5;5;25;25;12\n"
)
TEST = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n00000.ppm;53;54;6;5;48;49\n"


def test_train_format():
    rows = pp.parse_annotations(TRAIN.encode(), "GT-00000.csv")
    assert rows == [
        Annotation("00000_00000.ppm", 29, 30, (5, 6, 24, 25), 0),
        Annotation("00000_00001.ppm", 30, 30, (5, 5, 25, 25), 12),
    ]
    assert rows[0].roi == (5, 6, 24, 25) and rows[1].class_id == 12


def test_test_format_has_no_class():
    rows = pp.parse_annotations(TEST.encode(), "GT-final_test.test.csv")
    assert rows == [Annotation("00000.ppm", 53, 54, (6, 5, 48, 49), None)]


@pytest.mark.parametrize(
    "transform",
    [
        lambda s: s.replace("\n", "\r\n"),
        lambda s: "\ufeff" + s,
        lambda s: "\ufeff" + s.replace("\n", "\r\n") + "\r\n\r\n",
        lambda s: s + "\n\n\n",
        lambda s: s.rstrip("\n"),  # no final line end
    ],
)
def test_line_ends_bom_trailing_lines(transform):
    assert pp.parse_annotations(transform(TRAIN).encode("utf-8"), "x") == pp.parse_annotations(
        TRAIN.encode(), "x"
    )


def test_header_only_gives_no_rows():
    assert pp.parse_annotations(TRAIN.splitlines()[0].encode(), "x") == []


def test_real_shared_csv_if_present():
    base = real_gtsrb_root()
    path = base / "Final_Training" / "Images" / "00000" / "GT-00000.csv" if base else None
    if path is None or not path.exists():
        pytest.skip(
            "real GTSRB not found: set GTSRB_ROOT or provide ../shared/gtsrb beside the repository"
        )
    rows = pp.read_annotations(path)
    assert len(rows) > 100 and all(r.class_id == 0 for r in rows)
    assert all(0 <= r.roi[0] <= r.roi[2] < r.width for r in rows)


BAD = [
    ("", 1, "header"),
    ("Filename;Width;Height\n", 1, "header"),
    ("filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n", 1, "header"),
    (TRAIN + "a.ppm;30;30;1;1;5\n", 4, "fields"),
    (TRAIN + "a.ppm;30;30;1;1;5;5;1;9\n", 4, "fields"),
    (TRAIN + "a.ppm;30;x30;1;1;5;5;1\n", 4, "Height"),
    (TRAIN + "a.ppm;30;30;-1;1;5;5;1\n", 4, "Roi.X1"),
    (TRAIN + "a.ppm;30;30;1;1;5;5;\n", 4, "ClassId"),
    (TRAIN + "a.ppm;30;30;1;1;5;5;1.5\n", 4, "ClassId"),
    (TRAIN + "a.ppm;30;30;6;1;5;5;1\n", 4, "Roi.X1"),
    (TRAIN + "a.ppm;30;30;1;6;5;5;1\n", 4, "Roi.Y1"),
    (TRAIN + "a.ppm;30;30;1;1;30;5;1\n", 4, "Roi.X2"),
    (TRAIN + "a.ppm;30;20;1;1;5;20;1\n", 4, "Roi.Y2"),
    (TRAIN + "a.ppm;0;20;0;0;0;0;1\n", 4, "Width"),
    (TRAIN + ";30;30;1;1;5;5;1\n", 4, "Filename"),
    (TRAIN + "../x.ppm;30;30;1;1;5;5;1\n", 4, "Filename"),
    (TRAIN + "a.ppm;99999999999999;30;1;1;5;5;1\n", 4, "Width"),
    (TRAIN.replace("\n00000_00001", "\n\n00000_00001"), 3, "empty line"),
    (TEST + "a.ppm;30;30;1;1;5;5;1\n", 3, "fields"),
]


@pytest.mark.parametrize("text,line,fragment", BAD)
def test_bad_csv_names_source_line_field(text, line, fragment):
    with pytest.raises(errors.AnnotationError) as info:
        pp.parse_annotations(text.encode(), "GT-00042.csv")
    msg = str(info.value)
    assert "GT-00042.csv" in msg
    assert fragment in msg
    if line > 1:
        assert f"line {line}" in msg


def test_nul_byte_rejected():
    with pytest.raises(errors.AnnotationError, match="NUL"):
        pp.parse_annotations(TRAIN.encode() + b"a\0.ppm;1;1;0;0;0;0;0\n", "x")


def test_read_annotations_file(tmp_path):
    f = tmp_path / "GT-00001.csv"
    f.write_bytes(TRAIN.replace("\n", "\r\n").encode())
    assert len(pp.read_annotations(f)) == 2
    bad = tmp_path / "GT-00002.csv"
    bad.write_text(TRAIN + "a.ppm;30;30;1;1;5;5;z\n")
    with pytest.raises(errors.AnnotationError, match=r"GT-00002.csv: line 4, field ClassId"):
        pp.read_annotations(bad)
    with pytest.raises(FileNotFoundError, match="nope.csv") as info:
        pp.read_annotations(tmp_path / "nope.csv")
    assert isinstance(info.value, errors.NeonsignFileNotFoundError)


def test_parse_rejects_str():
    with pytest.raises(errors.NeonsignTypeError):
        pp.parse_annotations(TRAIN, "x")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_parse_or_raise(data):
    try:
        rows = pp.parse_annotations(data, "fuzz.csv")
    except errors.AnnotationError as exc:
        assert "fuzz.csv" in str(exc)
        return
    assert all(isinstance(r, Annotation) for r in rows)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789;-\r\n.ab", max_size=80))
def test_random_rows_parse_or_raise(tail):
    try:
        rows = pp.parse_annotations((TRAIN + tail).encode(), "fuzz.csv")
    except errors.AnnotationError as exc:
        assert "fuzz.csv" in str(exc) and "line" in str(exc)
        return
    for r in rows:
        x1, y1, x2, y2 = r.roi
        assert 0 <= x1 <= x2 < r.width and 0 <= y1 <= y2 < r.height


def _table_rows(table: pp.AnnotationTable, prefix: str) -> list[Annotation]:
    """The rows of a column table as Annotations (file names without the prefix)."""
    assert all(p.startswith(prefix) for p in table.paths)
    classes = [None] * len(table.paths) if table.class_ids is None else table.class_ids.tolist()
    return [
        Annotation(p[len(prefix) :], w, h, tuple(r), c)
        for p, w, h, r, c in zip(
            table.paths,
            table.widths.tolist(),
            table.heights.tolist(),
            table.rois.tolist(),
            classes,
            strict=True,
        )
    ]


@pytest.mark.parametrize("text", [TRAIN, TEST, TRAIN.replace("\n", "\r\n"), "\ufeff" + TEST])
def test_annotation_table_equals_rows(tmp_path, text):
    """read_annotation_table (issue 15: the split listing by column) holds exactly the rows of
    read_annotations, the file names behind the prefix, a non-ASCII name included."""
    f = tmp_path / "GT-x.csv"
    row = "b\u00e9.ppm;7;8;0;1;6;7" + (";42\n" if "ClassId" in text else "\n")
    f.write_bytes((text + row).encode())
    prefix = str(tmp_path) + "/"
    table = pp.read_annotation_table(f, prefix)
    rows = pp.read_annotations(f)
    assert _table_rows(table, prefix) == rows and rows[-1].filename == "b\u00e9.ppm"
    assert table.rois.shape == (len(rows), 4) and table.rois.dtype == table.widths.dtype == "int64"
    assert (table.class_ids is None) == ("ClassId" not in text)


@pytest.mark.parametrize("text,line,fragment", BAD)
def test_annotation_table_refuses_what_rows_refuse(tmp_path, text, line, fragment):
    f = tmp_path / "GT-00042.csv"
    f.write_bytes(text.encode())
    with pytest.raises(errors.AnnotationError) as info:
        pp.read_annotation_table(f, "x/")
    assert "GT-00042.csv" in str(info.value) and fragment in str(info.value)
    with pytest.raises(errors.NeonsignTypeError, match="prefix"):
        pp.read_annotation_table(f, b"x/")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789;-\r\n.ab", max_size=80))
def test_random_rows_table_matches_rows(tail):
    data = (TRAIN + tail).encode()
    try:
        rows = pp.parse_annotations(data, "fuzz.csv")
    except errors.AnnotationError as exc:
        with pytest.raises(errors.AnnotationError, match=str(exc).split(":")[0]):
            pp._core.csv_columns(data, "fuzz.csv", "")
        return
    paths, numbers, has_class = pp._core.csv_columns(data, "fuzz.csv", "")
    assert has_class and paths == [r.filename for r in rows]
    assert numbers.tolist() == [[r.width, r.height, *r.roi, r.class_id] for r in rows]
