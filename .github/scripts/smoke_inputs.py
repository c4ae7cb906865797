#!/usr/bin/env python3
"""Inputs for the container smoke test in ci.yml, where no trained model exists: a model
directory with seeded random TrafficSignNet weights (``OUT/model``) and a sign-like PNG
(``OUT/img.png``). Runs inside the serving image (``docker run ... python smoke_inputs.py``),
so it needs only what the image has: neonsign's library, NumPy and Pillow -- the same recipe as
tests/serve_helpers.py (``make_model_dir``, ``sign_like_images``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from neonsign.artifacts import make_card, save_model
from neonsign.engine import WEIGHT_SHAPES


def main(out: Path, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in WEIGHT_SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        bound = 4.0 / np.sqrt(fan_in)  # spread-out logits, so the top-1 is not a near tie
        weights[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    save_model(out / "model", weights, make_card(seed=seed), overwrite=True)
    h, w = 48, 52
    yy, xx = np.mgrid[0:h, 0:w]
    img = rng.integers(0, 128, (h, w, 3)).astype(np.uint8)
    img[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2.5) ** 2] = (200, 30, 30)
    Image.fromarray(img).save(out / "img.png")
    print(f"wrote {out / 'model'} and {out / 'img.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
