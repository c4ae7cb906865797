"""Render the served page's example images from the repository's synthetic sign generator.

Writes ``python/neonsign/app/serving/static/examples/``: one small PNG per chosen class (a
photo-like synthetic image: the sign on a cluttered background, as ``neonsign synth`` makes
them) and ``index.json`` listing each file's class, name, size and the sign's region of
interest (inclusive corners, as GTSRB's CSVs and the server's ``roi`` field give it), so the
page can show a user who has no image at hand what the model does with and without a ROI.

The output is a deterministic function of the seed; the files ship as package data (meson
installs ``python/neonsign`` whole) and are served by ``GET /examples/{name}``.

    .venv/bin/python tools/make_examples.py            # rewrite the committed examples
    .venv/bin/python tools/make_examples.py --check    # exit 1 if they differ from a fresh render
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image

from neonsign import preprocess
from neonsign.data import CLASS_NAMES
from neonsign.synth import synthesize

OUT = Path(__file__).resolve().parent.parent / "python/neonsign/app/serving/static/examples"

#: Classes whose signs look different from each other (shapes and colours).
CLASSES = (1, 12, 13, 14, 17, 25, 33, 40)
SEED = 7
SIZE_RANGE = (56, 96)  # big enough to see on the page, small files (a few kB each)


def render(seed: int = SEED) -> dict[str, bytes]:
    """{file name: bytes} of every example and ``index.json``."""
    files: dict[str, bytes] = {}
    index = []
    with tempfile.TemporaryDirectory(prefix="neonsign-examples.") as tmp:
        root = synthesize(
            Path(tmp) / "gtsrb",
            n_per_class=1,
            images_per_track=1,
            seed=seed,
            size_range=SIZE_RANGE,
            with_test=False,
        )
        for class_id in CLASSES:
            folder = root / "Final_Training" / "Images" / f"{class_id:05d}"
            with open(folder / f"GT-{class_id:05d}.csv", newline="") as f:
                row = next(csv.DictReader(f, delimiter=";"))
            pixels = preprocess.read_ppm(folder / row["Filename"])
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
            name = f"{class_id:02d}.png"
            files[name] = buf.getvalue()
            roi = [int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")]
            index.append(
                {
                    "file": name,
                    "class_id": class_id,
                    "label": CLASS_NAMES[class_id],
                    "width": int(pixels.shape[1]),
                    "height": int(pixels.shape[0]),
                    "roi": roi,
                }
            )
    doc = {"generator": "tools/make_examples.py", "seed": seed, "examples": index}
    files["index.json"] = (json.dumps(doc, indent=1) + "\n").encode()
    return files


def stale(files: dict[str, bytes]) -> list[str]:
    """Names under OUT that differ from ``files`` (PNGs by their pixels: zlib versions encode
    the same pixels differently), or are missing or extra."""
    import numpy as np

    def pixels(data: bytes) -> object:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB")).tobytes()

    out = sorted(p.name for p in OUT.glob("*") if p.name not in files)
    for name, data in files.items():
        path = OUT / name
        if not path.is_file():
            out.append(name)
        elif name.endswith(".png"):
            if pixels(path.read_bytes()) != pixels(data):
                out.append(name)
        elif path.read_bytes() != data:
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        names = stale(files)
        for name in names:
            print(f"{OUT / name}: out of date (run tools/make_examples.py)", file=sys.stderr)
        return 1 if names else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        if old.name not in files:
            old.unlink()
    for name, data in files.items():
        (OUT / name).write_bytes(data)
    print(f"wrote {len(files)} files ({sum(map(len, files.values()))} bytes) to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
