"""Profile and comparison plots (:mod:`neonsign.plots`, ``neonsign profile --plot``, ``neonsign
compare --plot``): the figures hold what the report says (backends, layers in forward order,
stacked times, speedups, changes), the files are real PNGs, and without matplotlib the CLI says
which extra to install before it spends time profiling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from neonsign.cli import main
from neonsign.engine import LAYERS
from neonsign.errors import MissingDependencyError
from neonsign.profile_report import ProfileReport, compare_backends

pytest.importorskip("matplotlib")

from neonsign.plots import (  # noqa: E402
    FORWARD_LABEL,
    compare_figure,
    layer_order,
    profile_figure,
    save_png,
)

BACKENDS = "native,native-ref"


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plots") / "profile.json"
    argv = ["profile", "--backends", BACKENDS, "--baseline", "native-ref", "--batch", "4",
            "--repeats", "2", "--warmup", "1", "--threads", "1", "--no-aten", "--quiet",
            "--json", str(path)]  # fmt: skip
    assert main(argv) == 0
    return path


def is_png(path: Path) -> tuple[int, int]:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_layer_order_is_the_forward_order() -> None:
    shuffled = ["fc2", "forward", "conv2", "extra", "conv1", "fc2", "total", "relu1"]
    assert layer_order(shuffled) == [n for n in LAYERS if n in shuffled] + ["extra"]


def test_profile_figure_stacks_layers_per_backend_with_speedups(report_path: Path) -> None:
    report = ProfileReport.load(report_path)
    fig = profile_figure(report)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == report.backends
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-1] == FORWARD_LABEL
    legend = legend[:-1]
    assert legend == [n for n in LAYERS if n != "forward"]  # every layer, forward order
    forward = [line.get_ydata()[0] for line in ax.get_lines()]
    assert np.allclose(forward, [report.total_ms(b) for b in report.backends])
    # each layer is one bar container; its heights are the report's medians per backend
    medians = {
        b: {
            r["name"]: r["self_ns_per_forward"]["median"] / 1e6 for r in report.backend(b)["layers"]
        }
        for b in report.backends
    }
    for layer, bars in zip(legend, ax.containers, strict=True):
        heights = [p.get_height() for p in bars.patches]
        assert np.allclose(heights, [medians[b][layer] for b in report.backends])
    notes = [t.get_text() for t in ax.texts]
    base = report.total_ms("native-ref")
    assert notes[1] == f"{base:.2f} ms\nbaseline"
    assert (
        notes[0] == f"{report.total_ms('native'):.2f} ms\n{base / report.total_ms('native'):.2f}x"
    )
    assert "speedup vs native-ref" in ax.get_title()
    assert ax.get_ylabel() == "median self time per forward (ms)"
    # another baseline moves the annotation
    other = profile_figure(report, baseline="native")
    assert other.axes[0].texts[0].get_text().endswith("baseline")


def test_compare_figure_pairs_layers_with_their_changes(report_path: Path) -> None:
    cmp = compare_backends(report_path, "native-ref", "native")
    fig = compare_figure(cmp)
    (ax,) = fig.axes
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == [n for n in LAYERS if n != "forward"] + ["total"]
    rows = {r["layer"]: r for r in cmp.rows}
    assert [t.get_text() for t in ax.texts] == [f"{rows[n]['change_pct']:+.1f}%" for n in names]
    base_bars, new_bars = ax.containers
    assert np.allclose([p.get_width() for p in base_bars.patches],
                       [rows[n]["base_ns"] / 1e6 for n in names])  # fmt: skip
    assert np.allclose([p.get_width() for p in new_bars.patches],
                       [rows[n]["new_ns"] / 1e6 for n in names])  # fmt: skip
    assert ax.get_title() == "native-ref -> native"
    # several comparisons: one panel each
    two = compare_figure([cmp, compare_backends(report_path, "native", "native-ref")])
    assert [a.get_title() for a in two.axes] == ["native-ref -> native", "native -> native-ref"]


def test_save_png_writes_a_png(report_path: Path, tmp_path: Path) -> None:
    out = save_png(profile_figure(ProfileReport.load(report_path)), tmp_path / "p.png")
    width, height = is_png(out)
    assert width > 300 and height > 200


def test_cli_profile_and_compare_plot(report_path: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "profile.png"
    argv = ["profile", "--backends", BACKENDS, "--batch", "2", "--repeats", "1", "--warmup",
            "0", "--threads", "1", "--no-aten", "--quiet", "--plot", str(png)]  # fmt: skip
    assert main(argv) == 0
    is_png(png)
    cpng = tmp_path / "compare.png"
    argv = ["compare", str(report_path), "--base-backend", "native-ref", "--new-backend",
            "native", "--plot", str(cpng)]  # fmt: skip
    assert main(argv) == 0
    is_png(cpng)
    assert f"wrote {cpng}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["profile", "compare"])
def test_missing_matplotlib_names_the_extra(
    monkeypatch, capsys, tmp_path: Path, report_path: Path, command: str
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "out.json"
    if command == "profile":
        argv = ["profile", "--backends", BACKENDS, "--json", str(out), "--plot", "p.png"]
    else:
        argv = ["compare", str(report_path), str(report_path), "--json", str(out),
                "--plot", str(tmp_path / "c.png")]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"neonsign {command}: error: matplotlib is not installed for --plot; "
        "install it with: pip install 'neonsign[plots]'\n"
    )
    assert not out.exists()  # refused before profiling or comparing
    with pytest.raises(MissingDependencyError, match=r"neonsign\[plots\]"):
        profile_figure(ProfileReport.load(report_path))
