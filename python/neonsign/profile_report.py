"""Profile reports (tables, JSON, Markdown, HTML) and comparing two runs or two backends.

A report is the dict :func:`neonsign.profiler.profile` builds; its JSON form follows the schema
shipped as ``neonsign/schemas/profile_report.schema.json`` (``schema_version`` 1). Times in the
JSON are nanoseconds of the profiler's monotonic clock:

- ``backends[].layers[]``: one row per span name (``forward`` is the whole pass; its self time
  is what the layers do not cover: dispatch and binding overhead). ``self_ns_total`` /
  ``total_ns_total`` sum over the timed repeats, ``*_avg`` divide by ``calls``,
  ``self_ns_per_forward`` has the median, mean, min, max and quartiles over repeats.
- ``backends[].total``: the forward pass of one batch, over repeats (``median_ns`` & co.).
- ``backends[].aten_kernels`` / ``layer_kernels``: the aten operators torch.profiler saw
  (empty for native backends, whose ``settings.kernel`` names the C kernel).

This module needs neither PyTorch nor jsonschema.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

from ._fileio import atomic_write_text
from .errors import NeonsignValueError, UnsupportedError, file_errors, require

__all__ = [
    "SCHEMA_VERSION",
    "AccuracyCheck",
    "AtenKernel",
    "BackendFigures",
    "BackendReport",
    "Comparison",
    "ComparisonRow",
    "KernelInfo",
    "LayerFigures",
    "MachineInfo",
    "ProfileReport",
    "ReportData",
    "ReportSettings",
    "SpanStats",
    "TotalFigures",
    "append_step_summary",
    "compare",
    "compare_backends",
    "schema_path",
    "write_text",
]

#: Version of the JSON layout; bumped on incompatible changes.
SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------
# The report's shape, as the profiler writes it (profile_report.schema.json says the same)


class SpanStats(TypedDict):
    """Statistics of one quantity over the timed repeats."""

    median: float
    mean: float
    min: float
    max: float
    q1: float
    q3: float


class LayerFigures(TypedDict):
    """One span name of one backend (``forward`` is the whole pass)."""

    name: str
    calls: int
    self_ns_total: int
    total_ns_total: int
    self_ns_avg: float
    total_ns_avg: float
    self_pct: float
    total_pct: float
    self_ns_per_forward: SpanStats


class TotalFigures(TypedDict):
    """The forward pass of one batch over the repeats."""

    per_repeat_ns: list[int]
    self_cpu_time_total_ns: int
    median_ns: float
    mean_ns: float
    min_ns: float
    max_ns: float
    q1_ns: float
    q3_ns: float


class BackendFigures(TypedDict):
    """What one backend's recorder yields: per-layer rows, the total and the cycle count."""

    layers: list[LayerFigures]
    total: TotalFigures
    cycles_per_forward_median: float | None


class AtenKernel(TypedDict):
    """One aten operator torch.profiler saw."""

    name: str
    calls: int
    self_cpu_us: float


class KernelInfo(TypedDict):
    """The aten kernels of a libtorch backend (empty for native backends)."""

    aten_kernels: list[AtenKernel]
    layer_kernels: dict[str, list[str]]


class AccuracyCheck(TypedDict):
    """A backend's logits against the reference backend's."""

    reference: str
    top1_agreement: float
    max_abs_logit_diff: float


class BackendReport(TypedDict):
    """One entry of the report's ``backends``."""

    name: str
    family: str
    description: str
    settings: dict[str, object]
    layers: list[LayerFigures]
    total: TotalFigures
    cycles_per_forward_median: float | None
    aten_kernels: list[AtenKernel]
    layer_kernels: dict[str, list[str]]
    accuracy_check: AccuracyCheck


class MachineInfo(TypedDict):
    """The machine and software a report was measured on."""

    arch: str
    cpu_model: str
    cpu_count: int
    cpu_flags: list[str]
    os: str
    python: str
    numpy: str
    neonsign: str
    torch: str | None
    cycle_counter_hz: float


class ReportSettings(TypedDict):
    """How the report was measured."""

    batch: int
    threads: int
    repeats: int
    warmup: int
    order: str
    flop_per_image: int
    seed: int
    model: str
    random_weights: bool
    input: str
    random_input: bool
    torch: str | None
    clock: str


class ReportData(TypedDict):
    """A whole report as :func:`neonsign.profiler.profile` writes it. A report read back with
    :meth:`ProfileReport.load` is a plain JSON object checked only for what reading relies on,
    so :attr:`ProfileReport.data` is typed as a dict."""

    schema_version: int
    tool: str
    created: str
    machine: MachineInfo
    settings: ReportSettings
    baseline: str
    backends: list[BackendReport]
    notes: list[str]


class ComparisonRow(TypedDict):
    """One compared layer (``layer`` "total": the whole forward pass) of :class:`Comparison`;
    times are medians per forward, ``change_pct`` positive = slower."""

    base_backend: str
    new_backend: str
    layer: str
    base_ns: float
    new_ns: float
    change_pct: float


_HEADERS = (
    "Name",
    "Self CPU %",
    "Self CPU",
    "CPU total %",
    "CPU total",
    "CPU time avg",
    "# of Calls",
    "Self median/fwd",
    "Self min..max/fwd",
)


def write_text(path: str | os.PathLike[str], text: str, action: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``, raising the NeonsignOSError subclass that matches
    the failure ("cannot ACTION PATH: REASON"); the path written."""
    return atomic_write_text(path, text, action)


def schema_path() -> Path:
    """Path of the JSON Schema that profile reports follow."""
    return Path(__file__).with_name("schemas") / "profile_report.schema.json"


def _fmt_ns(ns: float) -> str:
    """A duration the way torch.profiler prints it (us below 1 ms, ms below 1 s, else s)."""
    if ns < 1e6:
        return f"{ns / 1e3:.3f}us"
    if ns < 1e9:
        return f"{ns / 1e6:.3f}ms"
    return f"{ns / 1e9:.3f}s"


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    rule = "  ".join("-" * w for w in widths)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    out = [
        "| " + " | ".join(esc(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _require(obj: object, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` after checking that ``obj`` is a dict holding ``key`` of type ``kind``."""
    if not isinstance(obj, dict) or key not in obj:
        raise NeonsignValueError(f"{where}: missing field '{key}'")
    if not isinstance(obj[key], kind):
        raise NeonsignValueError(f"{where}: field '{key}' has type {type(obj[key]).__name__}")
    return obj[key]


class ProfileReport:
    """The result of :func:`neonsign.profiler.profile`: per backend, per layer and total times.

    ``data`` is the JSON-ready dict. :meth:`table` prints one backend in torch.profiler's
    ``key_averages().table()`` shape, :meth:`summary` the backends side by side, :meth:`text`
    both; :meth:`markdown`, :meth:`save_json`, :meth:`load` and ``_repr_html_`` (Jupyter).
    """

    def __init__(self, data: dict[str, Any], source: str = "report") -> None:
        self.data = data
        self.source = source
        self._validate()

    # -- loading and saving -----------------------------------------------------------------

    def _validate(self) -> None:
        where = self.source
        version = _require(self.data, "schema_version", int, where)
        if version != SCHEMA_VERSION:
            raise UnsupportedError(
                f"{where}: schema_version {version} is not supported (this neonsign reads "
                f"{SCHEMA_VERSION})"
            )
        _require(self.data, "machine", dict, where)
        settings = _require(self.data, "settings", dict, where)
        for key in ("batch", "threads", "repeats"):
            _require(settings, key, int, f"{where}: settings")
        backends = _require(self.data, "backends", list, where)
        if not backends:
            raise NeonsignValueError(f"{where}: 'backends' is empty")
        for i, b in enumerate(backends):
            w = f"{where}: backends[{i}]"
            _require(b, "name", str, w)
            layers = _require(b, "layers", list, w)
            total = _require(b, "total", dict, w)
            _require(total, "median_ns", (int, float), f"{w}.total")
            for j, layer in enumerate(layers):
                _require(layer, "name", str, f"{w}.layers[{j}]")
                stats = _require(layer, "self_ns_per_forward", dict, f"{w}.layers[{j}]")
                _require(stats, "median", (int, float), f"{w}.layers[{j}].self_ns_per_forward")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProfileReport:
        """Read a report written by :meth:`save_json` (checks the fields compare relies on)."""
        p = Path(path)
        with file_errors("read the profile report", p):
            raw = p.read_bytes()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NeonsignValueError(f"{p}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise NeonsignValueError(f"{p}: expected a JSON object at the top level")
        return cls(data, source=str(p))

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps(self.data, indent=2, sort_keys=False)

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON (a NeonsignOSError subclass naming ``path`` if it cannot
        be written: DiskFullError, NeonsignPermissionError, ...)."""
        write_text(path, self.to_json() + "\n", "write the profile report")

    def save_markdown(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`markdown` to ``path`` (errors as :meth:`save_json`)."""
        write_text(path, self.markdown(), "write the profile report")

    # -- access ----------------------------------------------------------------------------

    @property
    def backends(self) -> list[str]:
        """Names of the profiled backends, in run order."""
        return [b["name"] for b in self.data["backends"]]

    def backend(self, name: str) -> dict[str, Any]:
        """The figures of one backend."""
        for b in self.data["backends"]:
            if b["name"] == name:
                return cast("dict[str, Any]", b)
        raise NeonsignValueError(f"{self.source}: no backend '{name}' (has {self.backends})")

    def total_ms(self, name: str) -> float:
        """Median time of one forward pass of the batch on backend ``name``, in ms."""
        return float(self.backend(name)["total"]["median_ns"]) / 1e6

    # -- rendering -------------------------------------------------------------------------

    def _table_rows(self, name: str) -> list[list[str]]:
        b = self.backend(name)
        layers = sorted(b["layers"], key=lambda r: -r["total_ns_total"])
        rows = []
        for r in layers:
            s = r["self_ns_per_forward"]
            rows.append(
                [
                    r["name"],
                    f"{r['self_pct']:.2f}%",
                    _fmt_ns(r["self_ns_total"]),
                    f"{r['total_pct']:.2f}%",
                    _fmt_ns(r["total_ns_total"]),
                    _fmt_ns(r["total_ns_avg"]),
                    str(r["calls"]),
                    _fmt_ns(s["median"]),
                    f"{_fmt_ns(s['min'])}..{_fmt_ns(s['max'])}",
                ]
            )
        return rows

    def _conv_impl(self, b: dict[str, Any]) -> str:
        if b.get("family") == "native":
            return f"native:{b.get('settings', {}).get('kernel', '?')}"
        convs = b.get("layer_kernels", {}).get("conv1", [])
        picked = [k for k in convs if "conv" in k] or convs
        return ", ".join(picked) or "?"

    def _summary_rows(self) -> list[list[str]]:
        base = self.data.get("baseline")
        base_ms = self.total_ms(base) if base in self.backends else None
        batch = self.data["settings"]["batch"]
        flop = self.data["settings"].get("flop_per_image")
        rows = []
        for b in self.data["backends"]:
            t = b["total"]
            ms = t["median_ns"] / 1e6
            speed = f"{base_ms / ms:.2f}x" if base_ms and ms > 0 else "-"
            acc = b.get("accuracy_check", {})
            agree = acc.get("top1_agreement")
            rows.append(
                [
                    b["name"],
                    self._conv_impl(b),
                    f"{ms:.3f}",
                    f"{t['q1_ns'] / 1e6:.3f}..{t['q3_ns'] / 1e6:.3f}",
                    f"{t['min_ns'] / 1e6:.3f}..{t['max_ns'] / 1e6:.3f}",
                    f"{batch / (ms / 1e3):.0f}" if ms > 0 else "-",
                    f"{flop * batch / (ms * 1e6):.1f}" if flop and ms > 0 else "-",
                    speed,
                    "-" if agree is None else f"{100 * agree:.2f}%",
                ]
            )
        return rows

    _SUMMARY_HEADERS = (
        "Backend",
        "Conv kernel",
        "Median ms/batch",
        "IQR ms",
        "Min..max ms",
        "Images/s",
        "GFLOP/s",
        "Speedup",
        "Top-1 agree",
    )

    def _settings_line(self) -> str:
        s, m = self.data["settings"], self.data["machine"]
        return (
            f"{m.get('cpu_model', '?')} ({m.get('arch', '?')}), threads {s['threads']}, "
            f"batch {s['batch']}, {s['repeats']} repeats after {s.get('warmup', '?')} warm-up, "
            f"torch {s.get('torch') or 'not loaded'}; model: {s.get('model', '?')}; "
            f"input: {s.get('input', '?')}; baseline: {self.data.get('baseline')}"
        )

    def table(self, backend: str) -> str:
        """One backend's per-layer table in torch.profiler's key_averages shape (plus the median
        and range per forward pass), sorted by CPU total, then its Self CPU time total."""
        b = self.backend(backend)
        out = [
            _text_table(_HEADERS, self._table_rows(backend)),
            f"Self CPU time total: {_fmt_ns(b['total']['self_cpu_time_total_ns'])} "
            f"({len(b['total']['per_repeat_ns'])} forward passes; median per forward "
            f"{_fmt_ns(b['total']['median_ns'])})",
        ]
        kernels = b.get("layer_kernels") or {}
        if kernels:
            out.append(
                "aten kernels: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in kernels.items())
            )
        return "\n".join(out)

    def summary(self) -> str:
        """The backends side by side: median time per batch, spread, speedup vs the baseline."""
        return _text_table(self._SUMMARY_HEADERS, self._summary_rows())

    def text(self) -> str:
        """Every backend's table, then the summary and notes."""
        parts = [self._settings_line(), ""]
        for name in self.backends:
            parts += [f"== {name}", self.table(name), ""]
        parts += ["== summary", self.summary()]
        parts += [f"note: {n}" for n in self.data.get("notes", [])]
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.text()

    def markdown(self) -> str:
        """The report as GitHub-flavoured Markdown (for $GITHUB_STEP_SUMMARY)."""
        parts = [
            "## neonsign profile",
            "",
            self._settings_line(),
            "",
            _md_table(self._SUMMARY_HEADERS, self._summary_rows()),
            "",
        ]
        parts += [f"> note: {n}" for n in self.data.get("notes", [])]
        for name in self.backends:
            b = self.backend(name)
            parts += [
                "",
                f"### {name}",
                "",
                _md_table(_HEADERS, self._table_rows(name)),
                "",
                f"Self CPU time total: {_fmt_ns(b['total']['self_cpu_time_total_ns'])}",
            ]
            for layer, ks in (b.get("layer_kernels") or {}).items():
                parts.append(f"- `{layer}`: {', '.join(f'`{k}`' for k in ks)}")
        return "\n".join(parts) + "\n"

    def plot(self, ax: Any = None, layers: Sequence[str] | None = None) -> Any:
        """A stacked bar chart: median self time per forward (ms) of each layer, per backend.

        Needs matplotlib (the ``notebooks`` extra; MissingDependencyError without it). Returns
        the matplotlib Axes.
        """
        require("matplotlib", "notebooks", "plotting a profile report")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        if ax is None:
            _, ax = plt.subplots(figsize=(1.2 * len(self.backends) + 3, 4))
        if layers is None:
            layers = []
            for b in self.data["backends"]:
                layers += [r["name"] for r in b["layers"] if r["name"] not in layers]
        bottoms = [0.0] * len(self.backends)
        for layer in layers:
            values = [_layer_medians(b).get(layer, 0.0) / 1e6 for b in self.data["backends"]]
            ax.bar(self.backends, values, bottom=bottoms, label=layer)
            bottoms = [x + v for x, v in zip(bottoms, values, strict=True)]
        s = self.data["settings"]
        ax.set_ylabel("median ms per forward")
        ax.set_title(f"batch {s['batch']}, {s['threads']} threads")
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend(fontsize="small", ncols=2)
        return ax

    def _repr_html_(self) -> str:
        parts = [
            f"<h4>neonsign profile</h4><p>{html.escape(self._settings_line())}</p>",
            _html_table(self._SUMMARY_HEADERS, self._summary_rows()),
        ]
        parts += [f"<p><i>note: {html.escape(n)}</i></p>" for n in self.data.get("notes", [])]
        for name in self.backends:
            parts += [
                f"<h5>{html.escape(name)}</h5>",
                _html_table(_HEADERS, self._table_rows(name)),
            ]
        return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# compare


@dataclass
class Comparison:
    """Changes between two runs (or two backends of one run) and the gate's verdict.

    ``rows``: dicts with ``base_backend``, ``new_backend``, ``layer`` ("total" for the whole
    forward pass), ``base_ns``, ``new_ns`` (medians per forward) and ``change_pct`` (positive =
    slower). ``mismatches``: settings that differ between the two sides (reported, and failing
    the gate only with ``strict``). ``regressions``: what exceeded ``fail_if_slower``.
    """

    base_label: str
    new_label: str
    rows: list[ComparisonRow] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    fail_if_slower: float | None = None
    strict: bool = False

    @property
    def failed(self) -> bool:
        """True if the gate fails: a regression, or (strict) a settings mismatch."""
        return bool(self.regressions) or (self.strict and bool(self.mismatches))

    def headline(self) -> list[str]:
        """The learning path's line, per compared pair."""
        out = []
        for r in self.rows:
            if r["layer"] != "total":
                continue
            b, n = r["base_ns"] / 1e6, r["new_ns"] / 1e6
            ratio = b / n if n > 0 else float("inf")
            label = (
                r["base_backend"]
                if r["base_backend"] == r["new_backend"]
                else f"{r['base_backend']} -> {r['new_backend']}"
            )
            how = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
            out.append(
                f"[{label}] Self CPU time total (median per forward) went from {b:.3f} ms "
                f"to {n:.3f} ms: {r['change_pct']:+.1f}% ({how})"
            )
        return out

    def _rows_cells(self) -> list[list[str]]:
        return [
            [
                f"{r['base_backend']}"
                if r["base_backend"] == r["new_backend"]
                else f"{r['base_backend']} -> {r['new_backend']}",
                r["layer"],
                _fmt_ns(r["base_ns"]),
                _fmt_ns(r["new_ns"]),
                f"{r['change_pct']:+.1f}%",
            ]
            for r in self.rows
        ]

    _HEADERS = ("Backend", "Layer", "Base (median/fwd)", "New (median/fwd)", "Change")

    def verdict(self) -> str:
        """One line: passed or failed, and why."""
        if self.fail_if_slower is None and not self.strict:
            return "no gate set (use --fail-if-slower PCT)"
        if self.failed:
            why = self.regressions + (
                [f"settings differ ({len(self.mismatches)})"]
                if self.strict and self.mismatches
                else []
            )
            return "FAILED: " + "; ".join(why)
        limit = f" beyond {self.fail_if_slower:g}%" if self.fail_if_slower is not None else ""
        return f"passed: nothing regressed{limit}"

    def text(self) -> str:
        """Warnings, per-layer changes, the headline and the verdict as plain text."""
        parts = [f"base: {self.base_label}", f"new:  {self.new_label}"]
        parts += [f"WARNING: {m}" for m in self.mismatches]
        parts += [_text_table(self._HEADERS, self._rows_cells()), *self.headline(), self.verdict()]
        return "\n".join(parts)

    def markdown(self) -> str:
        """The same as Markdown."""
        parts = [
            "## neonsign compare",
            "",
            f"- base: `{self.base_label}`",
            f"- new: `{self.new_label}`",
        ]
        parts += [f"- **warning**: {m}" for m in self.mismatches]
        parts += ["", _md_table(self._HEADERS, self._rows_cells()), ""]
        parts += [f"{h}  " for h in self.headline()]
        parts += ["", f"**{self.verdict()}**"]
        return "\n".join(parts) + "\n"

    def _repr_html_(self) -> str:
        parts = [
            f"<h4>neonsign compare</h4><p>base: {html.escape(self.base_label)}<br>"
            f"new: {html.escape(self.new_label)}</p>"
        ]
        parts += [f"<p><b>warning</b>: {html.escape(m)}</p>" for m in self.mismatches]
        parts += [_html_table(self._HEADERS, self._rows_cells())]
        parts += [f"<p>{html.escape(h)}</p>" for h in self.headline()]
        parts += [f"<p><b>{html.escape(self.verdict())}</b></p>"]
        return "\n".join(parts)

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON to ``path`` (a NeonsignOSError subclass naming the
        path when it cannot be written: DiskFullError, NeonsignPermissionError, ...)."""
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", "write the comparison")

    def save_markdown(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`markdown` to ``path`` (errors as :meth:`save_json`)."""
        write_text(path, self.markdown(), "write the comparison")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (a change from a zero baseline is null rather than infinity)."""
        rows = [
            {**r, "change_pct": r["change_pct"] if math.isfinite(r["change_pct"]) else None}
            for r in self.rows
        ]
        return {
            "base": self.base_label,
            "new": self.new_label,
            "rows": rows,
            "mismatches": self.mismatches,
            "regressions": self.regressions,
            "fail_if_slower": self.fail_if_slower,
            "failed": self.failed,
        }


def _layer_medians(b: dict[str, Any]) -> dict[str, float]:
    return {r["name"]: float(r["self_ns_per_forward"]["median"]) for r in b["layers"]}


def _pct(base: float, new: float) -> float:
    return 100.0 * (new - base) / base if base > 0 else (0.0 if new == 0 else float("inf"))


def _compare_pair(
    cmp: Comparison, base_b: dict[str, Any], new_b: dict[str, Any], layers: Sequence[str] | None
) -> None:
    bl, nl = _layer_medians(base_b), _layer_medians(new_b)
    for name in [n for n in bl if n in nl]:
        cmp.rows.append(
            {
                "base_backend": base_b["name"],
                "new_backend": new_b["name"],
                "layer": name,
                "base_ns": bl[name],
                "new_ns": nl[name],
                "change_pct": _pct(bl[name], nl[name]),
            }
        )
    only = sorted(set(bl) ^ set(nl))
    if only:
        cmp.mismatches.append(
            f"{base_b['name']} vs {new_b['name']}: layers present on one side "
            f"only: {', '.join(only)} (not compared)"
        )
    tb, tn = float(base_b["total"]["median_ns"]), float(new_b["total"]["median_ns"])
    cmp.rows.append(
        {
            "base_backend": base_b["name"],
            "new_backend": new_b["name"],
            "layer": "total",
            "base_ns": tb,
            "new_ns": tn,
            "change_pct": _pct(tb, tn),
        }
    )
    pct = cmp.fail_if_slower
    if pct is None:
        return
    label = (
        base_b["name"]
        if base_b["name"] == new_b["name"]
        else f"{base_b['name']} -> {new_b['name']}"
    )
    if _pct(tb, tn) > pct:
        cmp.regressions.append(f"[{label}] total {_pct(tb, tn):+.1f}% > {pct:g}%")
    for name in layers or ():
        if name not in bl or name not in nl:
            raise NeonsignValueError(
                f"layer '{name}' is not in both reports for {label} (base has {sorted(bl)}, "
                f"new has {sorted(nl)})"
            )
        change = _pct(bl[name], nl[name])
        if change > pct:
            cmp.regressions.append(f"[{label}] {name} {change:+.1f}% > {pct:g}%")


def _settings_mismatches(base: ProfileReport, new: ProfileReport) -> list[str]:
    out = []
    bm, nm = base.data["machine"], new.data["machine"]
    for key in ("arch", "cpu_model", "cpu_count"):
        if bm.get(key) != nm.get(key):
            out.append(f"machine {key} differs: {bm.get(key)!r} vs {nm.get(key)!r}")
    bs, ns = base.data["settings"], new.data["settings"]
    for key in ("threads", "batch", "repeats", "warmup", "order", "input", "torch"):
        if bs.get(key) != ns.get(key):
            out.append(f"setting {key} differs: {bs.get(key)!r} vs {ns.get(key)!r}")
    if set(base.backends) != set(new.backends):
        out.append(
            f"backend sets differ: {sorted(base.backends)} vs {sorted(new.backends)} "
            "(only common backends are compared)"
        )
    return out


def _check_pct(pct: float | None) -> None:
    if pct is not None and not (pct >= 0):  # also rejects NaN
        raise NeonsignValueError(f"fail_if_slower must be a percentage >= 0, got {pct}")


def compare(
    base: ProfileReport | str | os.PathLike[str],
    new: ProfileReport | str | os.PathLike[str],
    *,
    backends: Sequence[str] | None = None,
    fail_if_slower: float | None = None,
    layers: Sequence[str] | None = None,
    strict: bool = False,
) -> Comparison:
    """Compare two reports backend by backend (the backends both have, or ``backends``).

    Differences in machine, threads, batch, repeats, input, torch version or backend set are
    listed in ``mismatches``. With ``fail_if_slower`` (percent), a total or a named layer in
    ``layers`` that got slower by more than that is a regression.
    """
    _check_pct(fail_if_slower)
    base = base if isinstance(base, ProfileReport) else ProfileReport.load(base)
    new = new if isinstance(new, ProfileReport) else ProfileReport.load(new)
    cmp = Comparison(base.source, new.source, fail_if_slower=fail_if_slower, strict=strict)
    cmp.mismatches = _settings_mismatches(base, new)
    names = list(backends) if backends else [n for n in base.backends if n in new.backends]
    if not names:
        raise NeonsignValueError(
            f"{base.source} and {new.source} have no backend in common "
            f"({base.backends} vs {new.backends})"
        )
    for name in names:
        _compare_pair(cmp, base.backend(name), new.backend(name), layers)
    return cmp


def compare_backends(
    report: ProfileReport | str | os.PathLike[str],
    base_backend: str,
    new_backend: str,
    *,
    new_report: ProfileReport | str | os.PathLike[str] | None = None,
    fail_if_slower: float | None = None,
    layers: Sequence[str] | None = None,
    strict: bool = False,
) -> Comparison:
    """Compare two backends (e.g. ``torch-onednn-off`` vs ``torch``: the learning path's
    OpenBLAS vs oneDNN+ACL comparison), layer by layer and in total: ``base_backend`` of
    ``report`` against ``new_backend`` of ``new_report`` (default: the same report). Across two
    reports, differences in machine and settings are listed in ``mismatches``."""
    _check_pct(fail_if_slower)
    base = report if isinstance(report, ProfileReport) else ProfileReport.load(report)
    if new_report is None:
        new = base
    else:
        new = (
            new_report if isinstance(new_report, ProfileReport) else ProfileReport.load(new_report)
        )
    cmp = Comparison(
        f"{base.source} [{base_backend}]",
        f"{new.source} [{new_backend}]",
        fail_if_slower=fail_if_slower,
        strict=strict,
    )
    if new is not base:
        cmp.mismatches = [
            m for m in _settings_mismatches(base, new) if not m.startswith("backend sets")
        ]
    _compare_pair(cmp, base.backend(base_backend), new.backend(new_backend), layers)
    return cmp


# ---------------------------------------------------------------------------------------------
# CLI


def append_step_summary(markdown: str) -> bool:
    """Append ``markdown`` to the file named by $GITHUB_STEP_SUMMARY, if set; True if written."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return False
    with open(summary, "a", encoding="utf-8") as fh:
        fh.write(markdown + "\n")
    return True
