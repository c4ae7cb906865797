"""Pictures of profile reports and comparisons: what ``neonsign profile --plot`` and ``neonsign
compare --plot`` draw, and what the main job writes beside ``summary.md``.

matplotlib is an optional dependency (the ``plots`` extra; ``notebooks`` and ``dev`` include
it): :func:`require_matplotlib` raises :class:`~neonsign.errors.MissingDependencyError` naming
the extra when it is missing. The figures are built with matplotlib's object-oriented API
(:class:`matplotlib.figure.Figure`, no ``pyplot``), so building or saving one never changes the
process's global backend (a notebook keeps its inline backend, a server stays headless).

The layers are drawn in forward order (:data:`neonsign.engine.LAYERS`: conv1 ... fc2), not in
the tables' order of cost, so two backends' bars read side by side like the network does.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._fileio import atomic_write
from .errors import NeonsignValueError, require
from .profile_report import Comparison, ProfileReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "EXTRA",
    "compare_figure",
    "layer_order",
    "profile_figure",
    "require_matplotlib",
    "save_png",
]

#: The pip extra that installs matplotlib (``pip install 'neonsign[plots]'``).
EXTRA = "plots"

#: The legend entry of the black line marking each backend's median forward time.
FORWARD_LABEL = "whole forward pass (median)"

#: Span names that are not a layer of the network (the whole pass, as a profile and a
#: comparison name it).
_NOT_LAYERS = frozenset({"forward", "total"})


def require_matplotlib(purpose: str = "plotting") -> Any:
    """Import matplotlib or raise MissingDependencyError: "matplotlib is not installed for
    PURPOSE; install it with: pip install 'neonsign[plots]'"."""
    return require("matplotlib", EXTRA, purpose)


def layer_order(names: Iterable[str]) -> list[str]:
    """``names`` (duplicates dropped, ``forward`` left out) in the network's forward order:
    the engine's layers first as :data:`neonsign.engine.LAYERS` lists them, then any other span
    (a backend's own step) in the order first seen."""
    from .engine import LAYERS

    seen = [n for n in dict.fromkeys(names) if n not in _NOT_LAYERS]
    known = [n for n in LAYERS if n in seen]
    return known + [n for n in seen if n not in known]


def _new_figure(width: float, height: float) -> Figure:
    require_matplotlib("drawing a plot")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def profile_figure(report: ProfileReport, baseline: str | None = None) -> Figure:
    """One stacked bar per backend: each layer's median self time per forward (ms), bottom to
    top in forward order; a black line at its median forward time, and above it that time and
    its speedup against
    ``baseline`` (default: the report's baseline; ``1.00x`` on the baseline itself).

    Raises:
        MissingDependencyError: matplotlib is not installed.
        NeonsignValueError: ``baseline`` is not a backend of the report.
    """
    backends = report.backends
    base = baseline if baseline is not None else report.data.get("baseline")
    if baseline is not None and baseline not in backends:
        raise NeonsignValueError(f"baseline '{baseline}' is not in the report (has {backends})")
    base_ms = report.total_ms(base) if base in backends else None
    medians = {
        b: {r["name"]: float(r["self_ns_per_forward"]["median"]) / 1e6 for r in rep["layers"]}
        for b in backends
        for rep in [report.backend(b)]
    }
    layers = layer_order(name for b in backends for name in medians[b])
    fig = _new_figure(max(5.0, 1.3 * len(backends) + 3.5), 4.8)
    ax = fig.add_subplot()
    bottoms = [0.0] * len(backends)
    for layer, colour in zip(layers, _colours(len(layers)), strict=True):
        values = [medians[b].get(layer, 0.0) for b in backends]
        ax.bar(backends, values, bottom=bottoms, label=layer, color=colour)
        bottoms = [x + v for x, v in zip(bottoms, values, strict=True)]
    top = max([*bottoms, *(report.total_ms(b) for b in backends), 1e-9])
    for i, b in enumerate(backends):
        ms = report.total_ms(b)
        # the whole forward pass: above the stack by the time outside the layers (the medians
        # of the parts need not add up to the median of the whole)
        ax.plot([i - 0.4, i + 0.4], [ms, ms], color="black", lw=1.2,
                label=FORWARD_LABEL if i == 0 else None)  # fmt: skip
        note = f"{ms:.2f} ms"
        if base_ms is not None and ms > 0:
            note += "\nbaseline" if b == base else f"\n{base_ms / ms:.2f}x"
        ax.annotate(note, (i, max(bottoms[i], ms)), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize="small")  # fmt: skip
    ax.set_ylim(0, top * 1.25)
    s = report.data["settings"]
    ax.set_ylabel("median self time per forward (ms)")
    ax.set_title(
        f"per-layer time, batch {s['batch']}, threads {s['threads']}"
        + (f"; speedup vs {base}" if base_ms is not None else "")
    )
    ax.tick_params(axis="x", labelrotation=20)
    handles, labels = ax.get_legend_handles_labels()  # layers first, then the forward line
    order = sorted(range(len(labels)), key=lambda k: labels[k] == FORWARD_LABEL)
    ax.legend([handles[k] for k in order], [labels[k] for k in order],
              title="layer (forward order)", fontsize="small", loc="upper left",
              bbox_to_anchor=(1.01, 1.0))  # fmt: skip
    return fig


def _pair_label(base: str, new: str) -> str:
    return base if base == new else f"{base} -> {new}"


def compare_figure(cmp: Comparison | Sequence[Comparison]) -> Figure:
    """One panel per compared pair (``base -> new``) of one comparison or several: each layer's median self time per
    forward on both sides as paired horizontal bars (layers top to bottom in forward order,
    the whole ``total`` last), each annotated with its change (``-35.2%``: faster).

    Raises:
        MissingDependencyError: matplotlib is not installed.
        NeonsignValueError: the comparison has no rows.
    """
    cmps = [cmp] if isinstance(cmp, Comparison) else list(cmp)
    pairs: dict[tuple[str, str], list[Any]] = {}
    for r in (row for c in cmps for row in c.rows):
        pairs.setdefault((r["base_backend"], r["new_backend"]), []).append(r)
    if not pairs:
        raise NeonsignValueError("the comparison has no rows to plot")
    rows_max = max(len(v) for v in pairs.values())
    fig = _new_figure(9.0, 0.9 + len(pairs) * (0.45 * rows_max + 0.8))
    axes = fig.subplots(len(pairs), 1, squeeze=False)[:, 0]
    for ax, ((base, new), rows) in zip(axes, pairs.items(), strict=True):
        by_layer = {r["layer"]: r for r in rows}
        names = layer_order(by_layer) + (["total"] if "total" in by_layer else [])
        names = [n for n in names if n in by_layer]
        ys = list(range(len(names)))
        height = 0.38
        base_ms = [by_layer[n]["base_ns"] / 1e6 for n in names]
        new_ms = [by_layer[n]["new_ns"] / 1e6 for n in names]
        ax.barh([y - height / 2 for y in ys], base_ms, height, label=f"base: {base}")
        ax.barh([y + height / 2 for y in ys], new_ms, height, label=f"new: {new}")
        for y, n in zip(ys, names, strict=True):
            pct = by_layer[n]["change_pct"]
            text = f"{pct:+.1f}%" if math.isfinite(pct) else "new"
            ax.annotate(text, (max(base_ms[y], new_ms[y]), y), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize="small")  # fmt: skip
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        ax.set_xlim(0, max([*base_ms, *new_ms, 1e-9]) * 1.22)
        ax.set_xlabel("median self time per forward (ms)")
        ax.set_title(_pair_label(base, new), fontsize="medium")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if len(cmps) == 1:
        fig.suptitle(f"base: {cmps[0].base_label}\nnew: {cmps[0].new_label}", fontsize="small")
    return fig


def save_png(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (a NeonsignOSError subclass naming the
    path when it cannot be written)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), "write the plot")
