"""Write notebooks/*.ipynb from the cell sources below.

The notebooks are generated so that their code stays reviewable as plain Python. They are
committed *with* the outputs of a run of ``tools/notebooks.sh --update`` (tables and figures a
reader sees on GitHub); CI executes them again and fails when those outputs are out of date in
structure (tools/notebook_outputs.py). Edit this file, then run:

    .venv/bin/python notebooks/make_notebooks.py      # sources (outputs cleared)
    bash tools/notebooks.sh --update                  # execute, write the outputs, commit

``tests/test_notebooks.py`` checks that the committed sources match this file and that every
code cell carries outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Shared first code cell: where the data comes from and the size knobs (environment variables,
# so CI runs the notebooks small).
SETUP = '''\
import os
import tempfile
from pathlib import Path

import numpy as np

import neonsign
from neonsign.data import class_name, find_split, load_split
from neonsign.errors import DatasetNotFoundError

def env_int(name: str, default: int) -> int:
    """An integer knob from the environment (the notebooks run small in CI)."""
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default

# One work directory for all notebooks (02_backends profiles the model 01_quickstart trains).
WORKDIR = Path(os.environ.get("NEONSIGN_NB_WORKDIR")
               or Path(tempfile.gettempdir()) / "neonsign-notebooks")
WORKDIR.mkdir(parents=True, exist_ok=True)
# Threads for training, inference and loading: every CPU up to 4 (TrafficSignNet is small: more
# threads mostly add synchronisation); NEONSIGN_NB_THREADS overrides.
THREADS = env_int("NEONSIGN_NB_THREADS", 0) or min(4, neonsign.cpu_count())
GTSRB_ROOT = os.environ.get("GTSRB_ROOT", "").strip()
if GTSRB_ROOT:
    DATA = Path(GTSRB_ROOT)
    print(f"real GTSRB data from {DATA}")
else:
    import json

    from neonsign.synth import synthesize

    DATA = WORKDIR / "synthetic-gtsrb"
    wanted = {"n_per_class": env_int("NEONSIGN_NB_PER_CLASS", 80), "images_per_track": 10,
              "n_test": env_int("NEONSIGN_NB_TEST", 430), "seed": 0}
    marker = DATA / "SYNTHETIC.json"
    made = json.loads(marker.read_text()) if marker.is_file() else {}
    if any(made.get(k) != v for k, v in wanted.items()):  # else reuse another notebook's copy
        synthesize(DATA, **wanted)
    print(f"synthetic GTSRB-format data in {DATA} (set GTSRB_ROOT to use the real data)")
# The shared real-data copy has only the training split: then the notebooks test on held-out data
# taken from it (validation tracks) instead of the test split.
try:
    find_split(DATA, "test")
    TEST_SPLIT = "test"
except DatasetNotFoundError:
    TEST_SPLIT = "train"
    print(f"no test split under {DATA}: held-out training data stands in for it")
print("neonsign", neonsign.__version__, "| work directory", WORKDIR, "| threads", THREADS)
'''

QUICKSTART = [
    new_markdown_cell(
        "# neonsign quick start\n\n"
        "Load GTSRB, train the learning path's TrafficSignNet briefly, test it, and classify a few "
        "images with the native engine.\n\n"
        "The notebook uses **synthesised** GTSRB-format data unless the environment variable "
        "`GTSRB_ROOT` points at the real data set. Size knobs (environment variables): "
        "`NEONSIGN_NB_PER_CLASS` (synthetic training images per class, default 80), "
        "`NEONSIGN_NB_TEST` (synthetic test images, default 430), `NEONSIGN_NB_EPOCHS` "
        "(default 10), `NEONSIGN_NB_THREADS` (threads, default: the CPUs, at most 4), "
        "`NEONSIGN_NB_LIMIT` (cap on images loaded per split, default: all), "
        "`NEONSIGN_NB_WORKDIR` (where data and the model go, default: `neonsign-notebooks` in "
        "the temporary folder, shared with the other notebooks: `02_backends` profiles the model "
        "trained here). Training needs PyTorch (`pip install 'neonsign[torch,notebooks]'`).\n\n"
        "**What to expect** with the defaults (3,440 synthetic training images, 430 test "
        "images): about 80% test accuracy after 10 epochs; training takes about 1.5 minutes on 2 "
        "idle x86-64 cores (4 minutes when the cores are shared with other work), the whole "
        "notebook 2 to 5 minutes. Fewer images or epochs are faster and much less accurate (40 "
        "images per class: 3 epochs give about 17%, 10 epochs 45%, 20 epochs 58%). CI runs it "
        "with 20 images per class and 2 epochs only to check that it works: its accuracy there "
        "means nothing. On the real GTSRB the learning path's 28 epochs reach about 97%."
    ),
    new_code_cell(SETUP),
    new_markdown_cell(
        "## Load the training split\n\n"
        "`load_split` finds the layout (official, torchvision, ...), then decodes, resizes "
        "(Pillow-compatible antialiased bilinear) and returns NumPy arrays in one C call with the "
        'GIL released. `dtype="uint8"` gives `(N, 32, 32, 3)` RGB, what training augments.'
    ),
    new_code_cell("""\
import matplotlib.pyplot as plt

LIMIT = env_int("NEONSIGN_NB_LIMIT", 0) or None
images, labels, meta = load_split(DATA, "train", dtype="uint8", limit=LIMIT)
print(images.shape, images.dtype, labels.shape, "data version", meta.checksum[:16])

fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for ax, i in zip(axes.flat, np.linspace(0, len(labels) - 1, axes.size).astype(int)):
    ax.imshow(images[i])
    ax.set_title(f"{labels[i]}", fontsize=8)
    ax.axis("off")
fig.suptitle("training images (32x32) with their class ids")
plt.show()"""),
    new_markdown_cell(
        "## Train briefly\n\n"
        "`train_loaded` trains on the arrays already in memory, holds out whole tracks for "
        "validation, and writes a model directory: `model.safetensors` + `model_card.json` "
        "(metrics, data checksum, code and library versions)."
    ),
    new_code_cell("""\
import json

from neonsign.train import TrainConfig, train_loaded

config = TrainConfig(epochs=env_int("NEONSIGN_NB_EPOCHS", 10), seed=0,
                     threads=THREADS)
model_dir = WORKDIR / "model"
result = train_loaded(images, labels, meta, model_dir, config=config, quiet=True,
                      overwrite=True)
print(f"validation accuracy by track: {result.val_accuracy}, best epoch {result.best_epoch}, "
      f"{result.seconds:.1f} s")
for row in result.history:
    print(row)
print(json.dumps({k: result.card[k] for k in ("data_checksum", "seed", "epochs") if k in result.card}, indent=1))"""),
    new_markdown_cell(
        "## Test\n\n"
        "`evaluate` loads the test split as the model card says and reports accuracy, per-class "
        "accuracy and the confusion matrix, on the fastest backend available (the native "
        "engine when built). Where there is no test split (the real-data copy beside the "
        "project holds only training images), `evaluate_arrays` tests the held-out validation "
        "tracks instead."
    ),
    new_code_cell("""\
from neonsign.evaluate import evaluate, evaluate_arrays, format_summary

if TEST_SPLIT == "test":
    report = evaluate(model_dir, DATA, split="test", limit=LIMIT, profile=False)
    test_u8, test_labels, _ = load_split(DATA, "test", dtype="uint8", limit=LIMIT)
else:  # no test split here: the validation tracks held out from training
    test_u8, test_labels = images[result.val_idx], labels[result.val_idx]
    report = evaluate_arrays(model_dir, test_u8, test_labels, profile=False, split="validation tracks")
print(format_summary(report))

cm = np.asarray(report["confusion_matrix"], dtype=float)
cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
fig, ax = plt.subplots(figsize=(5, 4.5))
im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
ax.set_xlabel("predicted class")
ax.set_ylabel("true class")
ax.set_title(f"confusion matrix, accuracy {report['accuracy']:.1%}")
fig.colorbar(im, ax=ax, fraction=0.046)
plt.show()"""),
    new_markdown_cell(
        "## Classify a few images with the native engine\n\n"
        "`Engine.from_file` packs the weights once for this CPU's kernels (NEON on AArch64, "
        "AVX2/AVX-512 on x86-64). `classify` takes float32 `(N, 3, 32, 32)` normalised images "
        "and returns the top-1 class and its probability."
    ),
    new_code_cell("""\
from neonsign.engine import Engine
from neonsign.preprocess import normalize

test_x = normalize(test_u8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))   # float32 (N, 3, 32, 32)
engine = Engine.from_file(model_dir)
print(engine)
pick = np.random.default_rng(0).choice(len(test_labels), size=min(8, len(test_labels)), replace=False)
classes, probs = engine.classify(test_x[pick])

fig, axes = plt.subplots(1, len(pick), figsize=(2 * len(pick), 2.8))
for ax, i, c, p in zip(np.atleast_1d(axes), pick, classes, probs):
    ok = int(c) == int(test_labels[i])
    ax.imshow(test_u8[i])
    ax.set_title(f"{class_name(int(c))[:18]}\\n{p:.0%} (true {int(test_labels[i])})",
                 fontsize=7, color="green" if ok else "red")
    ax.axis("off")
plt.show()"""),
]

BACKENDS = [
    new_markdown_cell(
        "# Backends: one model, every inference backend, per-layer times\n\n"
        "`neonsign.profile` runs TrafficSignNet on every available backend **in one process** "
        "(the native engine with each of its kernels, libtorch with oneDNN on and off, "
        "channels-last, bf16 where the CPU has it), times each layer with one clock and "
        "interleaves the timed passes so load drift hits all backends alike.\n\n"
        "Knobs (environment variables): `NEONSIGN_NB_BATCH` (default 32), "
        "`NEONSIGN_NB_REPEATS` (default 5), `NEONSIGN_NB_THREADS` (default: the CPUs, at most "
        "4), `NEONSIGN_NB_MODEL` (a model directory or `.pth`; default: the model "
        "`01_quickstart` trained in the shared work directory, else random weights, which time "
        "the same but agree on nothing meaningful), and `GTSRB_ROOT` / `NEONSIGN_NB_PER_CLASS` "
        "for the input images.\n\n"
        "**What to expect** (2 shared x86-64 cores, batch 32): about 30 s in all. The native "
        "engine's SIMD kernels run a forward pass several times faster than libtorch's default "
        "(`torch`); the reference C kernels (`native-ref`) are the slowest; every backend agrees "
        "with the reference on (nearly) all top-1 classes. The exact ratios depend on the CPU and "
        "its load: compare ratios measured side by side in one run."
    ),
    new_code_cell(SETUP),
    new_markdown_cell("## Which backends run here\n\nUnavailable ones say why."),
    new_code_cell("""\
from neonsign.profiler import list_backends

for b in list_backends():
    print(f"{b.name:22s} {'yes' if b.available else 'no ':3s}  {b.description if b.available else b.reason}")
available = [b.name for b in list_backends() if b.available]"""),
    new_markdown_cell(
        "## Profile\n\n"
        "The same batch of test images goes through each backend. The summary gives the median "
        "time per forward pass, the speedup against the baseline (`torch` when PyTorch is "
        "installed) and whether every backend agrees on the top-1 classes."
    ),
    new_code_cell("""\
model = os.environ.get("NEONSIGN_NB_MODEL") or None
if model is None and (WORKDIR / "model" / "model.safetensors").is_file():
    model = str(WORKDIR / "model")   # what 01_quickstart trained
print("model:", model or "random weights (run 01_quickstart first, or set NEONSIGN_NB_MODEL)")
threads = THREADS
rep = neonsign.profile(model=model, data=DATA, split=TEST_SPLIT, backends=available,
                       batch=env_int("NEONSIGN_NB_BATCH", 32), threads=threads,
                       repeats=env_int("NEONSIGN_NB_REPEATS", 5), warmup=2)
print(rep.summary())
for note in rep.data.get("notes", []):
    print("note:", note)
rep.save_json(WORKDIR / "profile.json")"""),
    new_markdown_cell(
        "## Per-layer times\n\n"
        "One bar chart per backend: median self time of each layer per forward pass. With the "
        "native SIMD kernels relu and pooling are fused into the convolutions (their bars are 0)."
    ),
    new_code_cell('''\
import matplotlib.pyplot as plt

def layer_medians_ms(backend: dict) -> dict[str, float]:
    """Median self time per forward pass of each layer, in milliseconds."""
    return {r["name"]: r["self_ns_per_forward"]["median"] / 1e6 for r in backend["layers"]}

backends = rep.data["backends"]
cols = min(3, len(backends))
rows = -(-len(backends) // cols)
fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
for ax, b in zip(axes.flat, backends):
    times = layer_medians_ms(b)
    ax.bar(list(times), list(times.values()), color="tab:blue")
    ax.set_title(b["name"], fontsize=10)
    ax.set_ylabel("ms per forward")
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
for ax in list(axes.flat)[len(backends):]:
    ax.axis("off")
fig.tight_layout()
plt.show()

from neonsign.plots import profile_figure

# the same layers stacked in forward order, all backends side by side (`neonsign profile --plot`)
display(profile_figure(rep))'''),
    new_markdown_cell(
        "## Speedup\n\n"
        "Median time per forward pass relative to the baseline backend (bigger is faster). "
        "The machine's load changes from run to run; ratios measured side by side in one run "
        "are what to compare."
    ),
    new_code_cell("""\
baseline = rep.data["baseline"]
totals = {b["name"]: b["total"]["median_ns"] for b in backends}
speedup = {name: totals[baseline] / t for name, t in totals.items()}
fig, ax = plt.subplots(figsize=(1.1 * len(speedup) + 3, 3.5))
bars = ax.bar(list(speedup), list(speedup.values()),
              color=["tab:green" if s >= 1 else "tab:red" for s in speedup.values()])
ax.bar_label(bars, fmt="%.2fx", fontsize=8)
ax.axhline(1.0, color="grey", lw=0.8)
ax.set_ylabel(f"speedup vs {baseline}")
ax.tick_params(axis="x", labelrotation=30)
ax.set_title(f"batch {rep.data['settings']['batch']}, {rep.data['settings']['threads']} threads")
plt.show()
for name, s in sorted(speedup.items(), key=lambda kv: -kv[1]):
    print(f"{name:22s} {totals[name] / 1e6:8.3f} ms  {s:5.2f}x")"""),
]

PREPROCESSING = [
    new_markdown_cell(
        "# Preprocessing: neonsign's C loader vs the Pillow pipeline\n\n"
        "The learning path preprocesses per image in Python: `Image.open` -> "
        "`Resize((32, 32))` -> `ToTensor` -> `Normalize(0.5, 0.5)`. neonsign does the same "
        "arithmetic in C for a whole split in one call (threads, GIL released). This notebook "
        "checks that the results agree and measures the throughput of both.\n\n"
        "Knobs: `GTSRB_ROOT`, `NEONSIGN_NB_PER_CLASS`, `NEONSIGN_NB_N` (images timed, default "
        "1000), `NEONSIGN_NB_REPEATS` (default 3), `NEONSIGN_NB_THREADS` (the multi-threaded "
        "run's threads, default: the CPUs, at most 4).\n\n"
        "**What to expect**: under a minute. The two pipelines agree exactly (100% identical "
        "values with Pillow >= 13, within one uint8 step with older Pillow); neonsign's C loader "
        "is several times faster than the Pillow loop on one thread, and faster again with more "
        "threads when the cores are free (on a loaded machine the thread gain shrinks)."
    ),
    new_code_cell(SETUP),
    new_markdown_cell(
        "## The two pipelines\n\n"
        "The reference is what torchvision's transforms compute, written with Pillow and NumPy "
        "(torchvision itself is not needed): bilinear resize of the whole image, `x / 255`, then "
        "`(x - 0.5) / 0.5`, channels first."
    ),
    new_code_cell('''\
from PIL import Image

from neonsign import preprocess as pp

_, _, meta = load_split(DATA, "train", dtype="uint8", limit=env_int("NEONSIGN_NB_N", 1000))
paths = [str(p) for p in meta.paths]
print(len(paths), "files, e.g.", paths[0])

def pillow_pipeline(path: str) -> np.ndarray:
    """float32 (3, 32, 32): Resize((32, 32)) -> ToTensor -> Normalize(0.5, 0.5), per image."""
    with Image.open(path) as im:
        x = np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)

def neonsign_pipeline(paths: list[str], threads: int | None = None) -> np.ndarray:
    """float32 (N, 3, 32, 32), the same arithmetic in one C call."""
    return pp.load_images(paths, threads=threads).images

ours = neonsign_pipeline(paths)
ref = np.stack([pillow_pipeline(p) for p in paths])
diff = np.abs(ours - ref)
print(f"max |neonsign - Pillow| = {diff.max():.3g} (one uint8 step is {2 / 255:.3g}); "
      f"identical values: {np.mean(diff == 0):.2%}")'''),
    new_markdown_cell(
        "## Throughput\n\n"
        "Images per second for the Pillow loop and for neonsign with 1 thread and with several "
        "threads (the CPUs, at most 4, at least 2); the best of a few runs."
    ),
    new_code_cell('''\
import time

import matplotlib.pyplot as plt

def best_seconds(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn()``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best

repeats = env_int("NEONSIGN_NB_REPEATS", 3)
timings = {
    "Pillow loop": best_seconds(lambda: [pillow_pipeline(p) for p in paths], repeats),
    "neonsign, 1 thread": best_seconds(lambda: neonsign_pipeline(paths, threads=1), repeats),
    f"neonsign, {max(2, THREADS)} threads": best_seconds(
        lambda: neonsign_pipeline(paths, threads=max(2, THREADS)), repeats),
}
rate = {k: len(paths) / s for k, s in timings.items()}
for k, r in rate.items():
    print(f"{k:22s} {r:10,.0f} images/s  ({r / rate['Pillow loop']:.1f}x)")

fig, ax = plt.subplots(figsize=(6, 3.2))
bars = ax.barh(list(rate), list(rate.values()), color=["tab:grey", "tab:blue", "tab:green"])
ax.bar_label(bars, fmt="%.0f", fontsize=8)
ax.set_xlabel("images per second (decode + resize + normalise)")
ax.invert_yaxis()
plt.show()'''),
    new_markdown_cell(
        "## Before and after resize\n\n"
        "Original images at their own sizes, then the 32x32 results of neonsign and of Pillow "
        "(they match bit for bit with Pillow >= 13; older Pillow within one step)."
    ),
    new_code_cell("""\
show = np.linspace(0, len(paths) - 1, 6).astype(int)
fig, axes = plt.subplots(3, len(show), figsize=(2 * len(show), 6.2))
for col, i in enumerate(show):
    original = pp.read_ppm(paths[i])
    ours_u8 = pp.resize(original, 32)
    with Image.open(paths[i]) as im:
        pil_u8 = np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR))
    for row, (img, title) in enumerate([(original, f"{original.shape[1]}x{original.shape[0]}"),
                                        (ours_u8, "neonsign 32x32"), (pil_u8, "Pillow 32x32")]):
        axes[row, col].imshow(img)
        axes[row, col].set_title(title, fontsize=8)
        axes[row, col].axis("off")
fig.tight_layout()
plt.show()"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_backends.ipynb": BACKENDS,
    "03_preprocessing.ipynb": PREPROCESSING,
}


def build(cells: list) -> nbformat.NotebookNode:
    """A notebook with the given cells, Python 3 kernel metadata and no outputs."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {  # nbconvert --to script reads the extension from here
        "name": "python",
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
    }
    for i, cell in enumerate(nb.cells):  # stable ids so regeneration gives identical files
        cell["id"] = f"cell-{i:02d}"
    return nb


def render(name: str) -> str:
    """The .ipynb text of notebook ``name`` without outputs."""
    return nbformat.writes(build(NOTEBOOKS[name])) + "\n"


def sources(nb: nbformat.NotebookNode) -> list[tuple[str, str, str]]:
    """``(id, cell type, source)`` of every cell: what this file decides."""
    return [(c.get("id", ""), c["cell_type"], c["source"]) for c in nb.cells]


def with_outputs(name: str, old: nbformat.NotebookNode | None) -> nbformat.NotebookNode:
    """Notebook ``name`` built from the sources here, keeping the outputs of ``old``'s cells
    whose id and source are unchanged (edited cells lose theirs until the next
    ``tools/notebooks.sh --update``)."""
    nb = build(NOTEBOOKS[name])
    kept = {c.get("id"): c for c in (old.cells if old is not None else [])}
    for cell in nb.cells:
        prev = kept.get(cell["id"])
        if cell["cell_type"] == "code" and prev is not None and prev["source"] == cell["source"]:
            cell["outputs"] = prev.get("outputs", [])
            cell["execution_count"] = prev.get("execution_count")
    return nb


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = HERE / name
        old = nbformat.read(path, as_version=4) if path.exists() else None
        if check:
            if old is None or sources(old) != sources(build(cells)):
                stale.append(name)
        else:
            path.write_text(nbformat.writes(with_outputs(name, old)) + "\n", encoding="utf-8")
            print("wrote", path)
    if stale:
        print("out of date (run notebooks/make_notebooks.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
