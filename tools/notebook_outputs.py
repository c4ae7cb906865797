"""Execute the notebooks and keep their committed outputs honest.

The notebooks in ``notebooks/`` are committed with the outputs (tables, figures) of a run of this
script, so a reader on GitHub sees results. CI executes them again and fails when the committed
outputs are out of date *in structure*: a different list of cells, a changed source, or a code
cell whose outputs are not the same kinds in the same order (a figure that disappeared, a table
that became text, an error). What legitimately varies between runs is ignored: numbers and
timings inside the text, images' pixels, execution counts and metadata, and ``stderr`` streams
(warnings, progress bars and libraries' log lines depend on the machine and library versions;
they are also left out of the committed outputs).

    python tools/notebook_outputs.py run [--update] [--html DIR] [--out DIR] NOTEBOOK...

``run`` executes each notebook in a fresh kernel (nbclient; cells run in order, the first failing
cell fails the notebook), then compares it with the committed file (exit 1 on a difference,
listed cell by cell), or with ``--update`` writes the executed notebook back over it. ``--out``
keeps the executed copies, ``--html`` renders them to HTML with their figures.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

#: Output kinds compared: what a reader sees, not the values that vary from run to run.
IGNORED_STREAMS = frozenset({"stderr"})


def output_kinds(outputs: list[dict[str, Any]]) -> list[str]:
    """The structure of a code cell's outputs: ``stream:stdout`` (consecutive chunks merged),
    ``display_data:image/png+text/plain``, ``execute_result:text/html+text/plain``,
    ``error:ValueError``; stderr streams left out."""
    kinds: list[str] = []
    for out in outputs:
        kind = out.get("output_type", "?")
        if kind == "stream":
            if out.get("name") in IGNORED_STREAMS:
                continue
            label = f"stream:{out.get('name')}"
            if kinds and kinds[-1] == label:
                continue
        elif kind in ("display_data", "execute_result"):
            label = f"{kind}:{'+'.join(sorted(out.get('data', {})))}"
        elif kind == "error":
            label = f"error:{out.get('ename')}"
        else:
            label = kind
        kinds.append(label)
    return kinds


def structure(nb: Any) -> list[tuple[str, str, list[str]]]:
    """``(cell type, source, output kinds)`` per cell."""
    return [(c["cell_type"], c["source"], output_kinds(c.get("outputs", []))) for c in nb["cells"]]


def differences(committed: Any, executed: Any) -> list[str]:
    """Why ``committed`` is out of date with ``executed``, one line per difference (empty:
    up to date)."""
    old, new = structure(committed), structure(executed)
    if len(old) != len(new):
        return [f"{len(old)} cells committed, {len(new)} executed"]
    out = []
    for i, ((ot, osrc, okinds), (nt, nsrc, nkinds)) in enumerate(zip(old, new, strict=True)):
        if ot != nt:
            out.append(f"cell {i}: {ot} committed, {nt} executed")
        elif osrc != nsrc:
            out.append(f"cell {i}: the source changed")
        elif okinds != nkinds:
            out.append(f"cell {i}: outputs {okinds} committed, {nkinds} executed")
    errors = [k for _, _, kinds in new for k in kinds if k.startswith("error:")]
    out += [f"the executed notebook has an error output ({e})" for e in errors]
    return out


def clean(nb: Any) -> Any:
    """``nb`` without what changes on every run and says nothing to a reader: per-cell
    execution metadata (timestamps), the kernel's version details and stderr (libraries' log
    lines, warnings and progress bars, which also differ between machines)."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("execution", None)
        if "outputs" in cell:
            cell["outputs"] = [
                o
                for o in cell["outputs"]
                if not (o.get("output_type") == "stream" and o.get("name") in IGNORED_STREAMS)
            ]
    nb["metadata"].get("language_info", {}).pop("version", None)
    return nb


def execute(path: Path, workdir: Path, timeout: int) -> Any:
    """``path`` executed in a fresh ``python3`` kernel, run in ``workdir``."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": os.fspath(workdir)}},
        record_timing=False,
    )
    client.execute()
    return clean(nb)


def write_html(nb: Any, path: Path) -> None:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    path.write_text(body, encoding="utf-8")


def run_one(path: Path, args: argparse.Namespace) -> bool:
    """Execute, compare (or update), keep copies; True when the notebook is fine."""
    from nbclient.exceptions import CellExecutionError

    t0 = time.perf_counter()
    print(f"== notebook {path.stem}", flush=True)
    with tempfile.TemporaryDirectory(prefix="neonsign-nb-run.") as tmp:
        try:
            executed = execute(path.resolve(), Path(tmp), args.timeout)
        except CellExecutionError as exc:
            print(f"== notebook {path.stem} FAILED: a cell raised\n{exc}", file=sys.stderr)
            return False
    seconds = time.perf_counter() - t0
    for folder, suffix, write in (
        (args.out, ".ipynb", nbformat.write),
        (args.html, ".html", write_html),
    ):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            write(executed, Path(folder) / (path.stem + suffix))
    if args.update:
        path.write_text(nbformat.writes(executed) + "\n", encoding="utf-8")
        print(f"== notebook {path.stem} executed in {seconds:.1f} s, outputs written", flush=True)
        return True
    diffs = differences(nbformat.read(path, as_version=4), executed)
    if diffs:
        print(f"== notebook {path.stem}: committed outputs are out of date:", file=sys.stderr)
        for d in diffs:
            print(f"   {d}", file=sys.stderr)
        print("   run `bash tools/notebooks.sh --update` and commit the result", file=sys.stderr)
        return False
    print(f"== notebook {path.stem} passed in {seconds:.1f} s (outputs up to date)", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks; compare with (or --update) the files")
    run.add_argument("notebooks", nargs="+", type=Path)
    run.add_argument("--update", action="store_true", help="write the outputs into the files")
    run.add_argument("--out", help="keep the executed notebooks here")
    run.add_argument("--html", help="render the executed notebooks to HTML here")
    run.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    args = parser.parse_args(argv)
    ok = [run_one(path, args) for path in args.notebooks]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
