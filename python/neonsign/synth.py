"""Synthetic GTSRB: the official layout, PPM + CSV with ROI, for all 43 classes, offline.

For tests and for the main job when no real data is present. Each class has its own sign:
shape (circle with red ring, blue disc, triangle, inverted triangle, octagon, diamond, ...),
colours and an inner symbol (digits for the speed limits, arrows, bars, stripes, vehicles,
pictograms). Each training *track* is one physical sign seen at increasing size (as GTSRB's
tracks are), with its own fading, rotation, background clutter and lighting; every image then
gets random position, blur, lighting and noise. Everything is drawn with Pillow and NumPy from
``numpy.random.default_rng([seed, ...])`` streams, so output is byte-identical per seed.

Written layout (``root`` is like a real data set with the ``GTSRB/`` level entered)::

    root/Final_Training/Images/000NN/TTTTT_IIIII.ppm + GT-000NN.csv
    root/Final_Test/Images/NNNNN.ppm + GT-final_test.test.csv (no labels)
    root/GT-final_test.csv
    root/SYNTHETIC.json            (the generator's parameters)
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .errors import NeonsignValueError, file_errors

__all__ = ["synthesize", "render_sign", "MARKER"]

MARKER = "SYNTHETIC.json"
_CSV_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2"
_T = 128  # template canvas side

RED = (200, 25, 35)
BLUE = (25, 80, 175)
YELLOW = (245, 185, 10)
WHITE = (242, 242, 238)
BLACK = (25, 25, 25)
GREY = (125, 125, 125)

# class id -> (shape, symbol, symbol argument)
_SIGNS: dict[int, tuple[str, str, object]] = {
    0: ("ring", "text", "20"),
    1: ("ring", "text", "30"),
    2: ("ring", "text", "50"),
    3: ("ring", "text", "60"),
    4: ("ring", "text", "70"),
    5: ("ring", "text", "80"),
    6: ("end", "end_text", "80"),
    7: ("ring", "text", "100"),
    8: ("ring", "text", "120"),
    9: ("ring", "vehicles", "car"),
    10: ("ring", "vehicles", "truck"),
    11: ("triangle", "cross", None),
    12: ("diamond", "none", None),
    13: ("yield", "none", None),
    14: ("octagon", "stop", None),
    15: ("ring", "none", None),
    16: ("ring", "truck", None),
    17: ("noentry", "none", None),
    18: ("triangle", "glyph", "!"),
    19: ("triangle", "curve", -1),
    20: ("triangle", "curve", 1),
    21: ("triangle", "double_curve", None),
    22: ("triangle", "bumps", None),
    23: ("triangle", "slippery", None),
    24: ("triangle", "narrows", None),
    25: ("triangle", "work", None),
    26: ("triangle", "signals", None),
    27: ("triangle", "people", 1),
    28: ("triangle", "people", 2),
    29: ("triangle", "bike", None),
    30: ("triangle", "snow", None),
    31: ("triangle", "deer", None),
    32: ("end", "stripes", None),
    33: ("blue", "arrow", (90,)),
    34: ("blue", "arrow", (-90,)),
    35: ("blue", "arrow", (0,)),
    36: ("blue", "arrow", (0, 90)),
    37: ("blue", "arrow", (0, -90)),
    38: ("blue", "arrow", (135,)),
    39: ("blue", "arrow", (-135,)),
    40: ("blue", "roundabout", None),
    41: ("end", "end_vehicles", "car"),
    42: ("end", "end_vehicles", "truck"),
}


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator, fade: float) -> tuple[int, ...]:
    """Fade a colour towards grey/white and jitter it a little (old, sun-bleached signs)."""
    c = np.asarray(colour, np.float64)
    c = c + fade * (200.0 - c) + rng.normal(0.0, 8.0, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


# --------------------------------------------------------------------------------------------
# Symbols, drawn on a _T x _T canvas in unit coordinates (0..1)


def _p(x: float, y: float) -> tuple[float, float]:
    return (x * _T, y * _T)


def _line(d: ImageDraw.ImageDraw, pts: list[tuple[float, float]], colour, w: float) -> None:
    d.line([_p(x, y) for x, y in pts], fill=colour, width=max(1, int(w * _T)), joint="curve")


def _arrow(d: ImageDraw.ImageDraw, angle: float, colour, cx=0.5, cy=0.72, length=0.42) -> None:
    """A thick arrow from (cx, cy) pointing at ``angle`` degrees (0 = up, 90 = right)."""
    a = math.radians(angle)
    dx, dy = math.sin(a), -math.cos(a)
    tip = (cx + dx * length, cy + dy * length)
    base = (cx + dx * (length - 0.16), cy + dy * (length - 0.16))
    _line(d, [(cx, cy), base], colour, 0.08)
    px, py = -dy, dx
    d.polygon(
        [
            _p(*tip),
            _p(base[0] + px * 0.12, base[1] + py * 0.12),
            _p(base[0] - px * 0.12, base[1] - py * 0.12),
        ],
        fill=colour,
    )


def _car(d: ImageDraw.ImageDraw, x: float, y: float, colour, truck: bool = False) -> None:
    w = 0.22 if truck else 0.16
    d.rectangle([_p(x - w / 2, y - 0.05), _p(x + w / 2, y + 0.06)], fill=colour)
    if truck:
        d.rectangle([_p(x - w / 2, y - 0.14), _p(x + w / 6, y - 0.05)], fill=colour)
    else:
        d.rectangle([_p(x - w / 3, y - 0.12), _p(x + w / 3, y - 0.05)], fill=colour)
    for wx in (x - w / 3, x + w / 3):
        d.ellipse([_p(wx - 0.035, y + 0.04), _p(wx + 0.035, y + 0.11)], fill=BLACK)


def _person(d: ImageDraw.ImageDraw, x: float, y: float, s: float, colour) -> None:
    d.ellipse([_p(x - 0.04 * s, y - 0.2 * s), _p(x + 0.04 * s, y - 0.12 * s)], fill=colour)
    _line(d, [(x, y - 0.12 * s), (x, y + 0.04 * s)], colour, 0.045 * s)
    _line(
        d,
        [(x - 0.07 * s, y + 0.16 * s), (x, y + 0.04 * s), (x + 0.07 * s, y + 0.16 * s)],
        colour,
        0.04 * s,
    )
    _line(
        d,
        [(x - 0.07 * s, y - 0.02 * s), (x, y - 0.09 * s), (x + 0.07 * s, y - 0.02 * s)],
        colour,
        0.035 * s,
    )


def _draw_symbol(
    d: ImageDraw.ImageDraw, kind: str, arg: object, ink, rng: np.random.Generator
) -> None:
    if kind == "none":
        return
    if kind in ("text", "end_text", "glyph", "stop"):
        text = {"stop": "STOP"}.get(kind, str(arg))
        size = {"stop": 34, "glyph": 64}.get(kind, 56 if len(text) == 2 else 44)
        colour = GREY if kind == "end_text" else (WHITE if kind == "stop" else ink)
        cy = 0.64 if kind == "glyph" else 0.5
        d.text(
            _p(0.5, cy),
            text,
            fill=colour,
            font=_font(size),
            anchor="mm",
            stroke_width=1 if kind != "stop" else 0,
            stroke_fill=colour,
        )
        if kind == "end_text":
            _line(d, [(0.78, 0.22), (0.22, 0.78)], BLACK, 0.05)
    elif kind == "vehicles":
        _car(d, 0.34, 0.52, RED if arg == "car" else BLACK, truck=arg == "truck")
        _car(d, 0.66, 0.52, BLACK)
    elif kind == "end_vehicles":
        _car(d, 0.34, 0.52, GREY, truck=arg == "truck")
        _car(d, 0.66, 0.52, GREY)
        for off in (-0.06, 0.0, 0.06):
            _line(d, [(0.8 + off, 0.2 + off), (0.2 + off, 0.8 + off)], BLACK, 0.018)
    elif kind == "truck":
        _car(d, 0.5, 0.52, BLACK, truck=True)
    elif kind == "stripes":
        for off in (-0.1, -0.05, 0.0, 0.05, 0.1):
            _line(d, [(0.8 + off, 0.2 + off), (0.2 + off, 0.8 + off)], BLACK, 0.02)
    elif kind == "cross":
        _line(d, [(0.5, 0.36), (0.5, 0.84)], ink, 0.07)
        _line(d, [(0.36, 0.56), (0.64, 0.56)], ink, 0.07)
    elif kind == "curve":
        s = float(arg)  # -1 left, 1 right
        _line(
            d,
            [
                (0.5 - 0.05 * s, 0.84),
                (0.5 - 0.02 * s, 0.62),
                (0.5 + 0.1 * s, 0.48),
                (0.5 + 0.16 * s, 0.4),
            ],
            ink,
            0.065,
        )
        d.polygon(
            [_p(0.5 + 0.22 * s, 0.34), _p(0.5 + 0.06 * s, 0.38), _p(0.5 + 0.2 * s, 0.48)], fill=ink
        )
    elif kind == "double_curve":
        _line(d, [(0.45, 0.86), (0.42, 0.72), (0.56, 0.6), (0.44, 0.48), (0.5, 0.36)], ink, 0.06)
    elif kind == "bumps":
        d.pieslice([_p(0.24, 0.62), _p(0.5, 0.88)], 180, 360, fill=ink)
        d.pieslice([_p(0.5, 0.62), _p(0.76, 0.88)], 180, 360, fill=ink)
    elif kind == "slippery":
        _car(d, 0.5, 0.52, ink)
        _line(d, [(0.32, 0.8), (0.42, 0.72), (0.5, 0.82), (0.6, 0.72), (0.68, 0.8)], ink, 0.03)
    elif kind == "narrows":
        _line(d, [(0.4, 0.86), (0.4, 0.4)], ink, 0.06)
        _line(d, [(0.62, 0.86), (0.62, 0.64), (0.52, 0.52), (0.52, 0.4)], ink, 0.06)
    elif kind == "work":
        _person(d, 0.46, 0.62, 1.0, ink)
        d.polygon([_p(0.56, 0.82), _p(0.72, 0.82), _p(0.64, 0.7)], fill=ink)
        _line(d, [(0.5, 0.6), (0.62, 0.72)], ink, 0.03)
    elif kind == "signals":
        d.rectangle([_p(0.42, 0.38), _p(0.58, 0.86)], fill=BLACK)
        for cy, col in ((0.46, RED), (0.62, YELLOW), (0.78, (20, 160, 60))):
            d.ellipse([_p(0.45, cy - 0.06), _p(0.55, cy + 0.06)], fill=col)
    elif kind == "people":
        if arg == 1:
            _person(d, 0.5, 0.64, 1.1, ink)
        else:
            _person(d, 0.42, 0.66, 0.9, ink)
            _person(d, 0.6, 0.7, 0.7, ink)
    elif kind == "bike":
        for cx in (0.36, 0.64):
            d.ellipse([_p(cx - 0.1, 0.62), _p(cx + 0.1, 0.82)], outline=ink, width=int(0.03 * _T))
        _line(d, [(0.36, 0.72), (0.48, 0.56), (0.64, 0.72), (0.56, 0.5)], ink, 0.03)
    elif kind == "snow":
        for ang in (0, 60, 120):
            a = math.radians(ang)
            dx, dy = 0.18 * math.sin(a), 0.18 * math.cos(a)
            _line(d, [(0.5 - dx, 0.64 - dy), (0.5 + dx, 0.64 + dy)], ink, 0.035)
    elif kind == "deer":
        d.polygon(
            [
                _p(0.3, 0.7),
                _p(0.62, 0.62),
                _p(0.7, 0.5),
                _p(0.76, 0.52),
                _p(0.68, 0.7),
                _p(0.62, 0.84),
                _p(0.56, 0.72),
                _p(0.38, 0.76),
                _p(0.34, 0.86),
            ],
            fill=ink,
        )
        _line(d, [(0.7, 0.5), (0.66, 0.38), (0.74, 0.42)], ink, 0.02)
    elif kind == "arrow":
        angles = tuple(arg)  # type: ignore[arg-type]
        if len(angles) == 2:  # straight or turn: a shared stem
            _arrow(d, angles[0], WHITE, cy=0.82, length=0.6)
            _arrow(d, angles[1], WHITE, cx=0.5, cy=0.56, length=0.3)
        elif abs(angles[0]) == 135:  # keep right/left: a diagonal arrow down
            _arrow(
                d,
                angles[0],
                WHITE,
                cx=0.5 - 0.16 * math.copysign(1, angles[0]),
                cy=0.34,
                length=0.46,
            )
        elif angles[0] == 0:
            _arrow(d, 0, WHITE, cy=0.84, length=0.66)
        else:  # turn right/left ahead: up then sideways
            s = math.copysign(1, angles[0])
            _line(d, [(0.5 - 0.12 * s, 0.82), (0.5 - 0.12 * s, 0.46)], WHITE, 0.08)
            _arrow(d, angles[0], WHITE, cx=0.5 - 0.12 * s, cy=0.46, length=0.4)
    elif kind == "roundabout":
        for ang in (0, 120, 240):
            a = math.radians(ang)
            cx, cy = 0.5 + 0.2 * math.sin(a), 0.5 - 0.2 * math.cos(a)
            _arrow(d, ang + 90, WHITE, cx=cx, cy=cy, length=0.2)
    else:  # pragma: no cover - table and drawing are kept in sync by test_every_class_renders
        raise NeonsignValueError(f"unknown symbol {kind!r}")


def render_sign(class_id: int, rng: np.random.Generator, fade: float = 0.0) -> Image.Image:
    """Draw the sign of ``class_id`` on a transparent RGBA ``_T`` x ``_T`` canvas."""
    if class_id not in _SIGNS:
        raise NeonsignValueError(f"class_id {class_id} is outside 0..42")
    shape, kind, arg = _SIGNS[class_id]
    img = Image.new("RGBA", (_T, _T), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    red, blue, yellow, white = (_jitter(c, rng, fade) for c in (RED, BLUE, YELLOW, WHITE))
    full = [_p(0.02, 0.02), _p(0.98, 0.98)]
    inner = [_p(0.15, 0.15), _p(0.85, 0.85)]
    ink = BLACK
    if shape == "ring":
        d.ellipse(full, fill=red)
        d.ellipse(inner, fill=white)
    elif shape == "end":
        d.ellipse(full, fill=(90, 90, 90))
        d.ellipse([_p(0.05, 0.05), _p(0.95, 0.95)], fill=white)
    elif shape == "blue":
        d.ellipse(full, fill=(235, 235, 235))
        d.ellipse([_p(0.05, 0.05), _p(0.95, 0.95)], fill=blue)
    elif shape == "noentry":
        d.ellipse(full, fill=red)
        d.rectangle([_p(0.2, 0.42), _p(0.8, 0.58)], fill=white)
    elif shape == "triangle":
        d.polygon([_p(0.5, 0.04), _p(0.98, 0.92), _p(0.02, 0.92)], fill=red)
        d.polygon([_p(0.5, 0.24), _p(0.82, 0.82), _p(0.18, 0.82)], fill=white)
    elif shape == "yield":
        d.polygon([_p(0.02, 0.08), _p(0.98, 0.08), _p(0.5, 0.96)], fill=red)
        d.polygon([_p(0.18, 0.18), _p(0.82, 0.18), _p(0.5, 0.76)], fill=white)
    elif shape == "octagon":
        pts = [
            _p(
                0.5 + 0.48 * math.cos(math.radians(22.5 + 45 * k)),
                0.5 + 0.48 * math.sin(math.radians(22.5 + 45 * k)),
            )
            for k in range(8)
        ]
        d.polygon(pts, fill=red)
    elif shape == "diamond":
        d.polygon([_p(0.5, 0.02), _p(0.98, 0.5), _p(0.5, 0.98), _p(0.02, 0.5)], fill=white)
        d.polygon([_p(0.5, 0.2), _p(0.8, 0.5), _p(0.5, 0.8), _p(0.2, 0.5)], fill=yellow)
    _draw_symbol(d, kind, arg, ink, rng)
    return img


# --------------------------------------------------------------------------------------------
# Scenes


def _background_spec(rng: np.random.Generator) -> dict:
    """A track's scene: sky/foliage/building colours and clutter shapes in unit coordinates."""
    palette = np.array(
        [
            [120, 160, 210],
            [70, 110, 60],
            [110, 100, 90],
            [150, 150, 150],
            [60, 70, 80],
            [180, 170, 140],
            [40, 60, 40],
        ],
        np.float64,
    )
    top, bottom = palette[rng.integers(len(palette), size=2)] + rng.normal(0, 20, (2, 3))
    shapes = []
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = rng.uniform(-0.2, 1.0, 2)
        w, h = rng.uniform(0.1, 0.6, 2)
        col = tuple(int(v) for v in np.clip(rng.uniform(20, 230, 3), 0, 255))
        shapes.append((int(rng.integers(3)), (x0, y0, x0 + w, y0 + h), col))
    return {"top": top, "bottom": bottom, "shapes": shapes}


def _background(
    spec: dict, w: int, h: int, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> Image.Image:
    """Draw a scene; ``zoom`` (about the centre) and ``shift`` (unit coordinates) move the
    clutter as the camera approaches the sign."""
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    grad = spec["top"] * (1 - t) + spec["bottom"] * t
    img = Image.fromarray(np.clip(np.broadcast_to(grad, (h, w, 3)), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for kind, corners, col in spec["shapes"]:
        x0, y0, x1, y1 = ((v - 0.5) * zoom + 0.5 + shift[i % 2] for i, v in enumerate(corners))
        box = [x0 * w, y0 * h, x1 * w, y1 * h]
        if kind == 0:
            d.rectangle(box, fill=col)
        elif kind == 1:
            d.ellipse(box, fill=col)
        else:
            d.line(box, fill=col, width=max(1, int(0.05 * w)))
    return img


def _render_image(
    template: Image.Image,
    bg: Image.Image,
    w: int,
    h: int,
    rng: np.random.Generator,
    angle: float,
    gain: float,
    cast: np.ndarray,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One photo: the sign (ROI ~10% / >= 5 px margin) on ``bg``, lit, blurred, noisy."""
    img = bg
    mx = max(5, int(round(0.1 * w))) if w >= 15 else max(1, w // 4)
    my = max(5, int(round(0.1 * h))) if h >= 15 else max(1, h // 4)
    sw, sh = max(2, w - 2 * mx), max(2, h - 2 * my)
    # The sign is not always centred in the photo; its ROI follows it.
    ox = int(np.clip(mx + rng.integers(-mx // 2, mx // 2 + 1), 0, w - sw))
    oy = int(np.clip(my + rng.integers(-my // 2, my // 2 + 1), 0, h - sh))
    sign = template.rotate(angle, resample=Image.BILINEAR).resize((sw, sh), Image.BILINEAR)
    img.paste(sign, (ox, oy), sign)
    blur = rng.uniform(0.0, 0.025) * w + (rng.uniform(0.2, 0.7) if rng.random() < 0.3 else 0.0)
    if blur > 0.25:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(img, np.float32) * (gain * cast)
    a += rng.normal(0.0, rng.uniform(2.0, 14.0), a.shape).astype(np.float32)
    return np.clip(a, 0, 255).astype(np.uint8), (ox, oy, ox + sw - 1, oy + sh - 1)


def _write_ppm(path: Path, pixels: np.ndarray) -> None:
    h, w, _ = pixels.shape
    with open(path, "wb") as f:
        f.write(f"P6\n{w} {h}\n255\n".encode("ascii"))
        f.write(np.ascontiguousarray(pixels).tobytes())


def _track_sizes(
    rng: np.random.Generator, n: int, size_range: tuple[int, int]
) -> list[tuple[int, int]]:
    """GTSRB-like sizes: a track approaches the sign, so sizes grow. Fitted to GTSRB's training
    widths (percentiles 5/25/50/75/95 = 28/35/43/58/101 px, min 25), then clipped to
    ``size_range``."""
    lo, hi = size_range
    end = float(np.clip(np.exp(rng.normal(math.log(65), 0.4)), lo, hi))
    start = float(np.clip(max(end / rng.uniform(2.0, 3.0), 25.0), lo, end))
    aspect = rng.uniform(0.9, 1.1)
    sizes = []
    for k in range(n):
        # one image alone (a test image) is a random point along its track
        frac = k / (n - 1) if n > 1 else rng.uniform()
        s = start + (end - start) * frac
        w = int(np.clip(round(s * aspect), lo, hi))
        sizes.append((w, int(np.clip(round(s), lo, hi))))
    return sizes


def _make_track(
    class_id: int, n: int, rng: np.random.Generator, size_range: tuple[int, int]
) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    template = render_sign(class_id, rng, fade=float(rng.uniform(0.0, 0.35)))
    bg = _background_spec(rng)
    base_gain = rng.uniform(0.4, 1.3)
    cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    angle = rng.uniform(-10, 10)
    drift = rng.uniform(-0.6, 0.6, 2)  # how far the scene slides past during the track
    out = []
    sizes = _track_sizes(rng, n, size_range)
    for k, (w, h) in enumerate(sizes):
        frac = k / (n - 1) if n > 1 else float(rng.uniform())
        scene = _background(
            bg, w, h, zoom=1.0 + 1.5 * frac, shift=(float(drift[0] * frac), float(drift[1] * frac))
        )
        gain = np.float32(np.clip(base_gain * rng.uniform(0.9, 1.1), 0.2, 1.6))
        out.append(
            _render_image(template, scene, w, h, rng, angle + rng.normal(0, 1.5), gain, cast)
        )
    return out


def _csv_row(name: str, pixels: np.ndarray, roi: tuple[int, int, int, int]) -> str:
    h, w, _ = pixels.shape
    return f"{name};{w};{h};{roi[0]};{roi[1]};{roi[2]};{roi[3]}"


def synthesize(
    root: str | Path,
    *,
    n_per_class: int = 60,
    images_per_track: int = 10,
    seed: int = 0,
    size_range: tuple[int, int] = (15, 250),
    with_test: bool = True,
    n_test: int | None = None,
    progress: bool = False,
) -> Path:
    """Write a synthetic GTSRB data set in the official layout under ``root`` and return it.

    Args:
        root: folder to write (created). If it already holds a data set that this function did
            not write (no ``SYNTHETIC.json``), NeonsignValueError is raised instead of mixing.
        n_per_class: training images per class, in tracks of ``images_per_track`` (the last
            track of a class may be shorter).
        images_per_track: images per track. GTSRB has 30; the default 10 gives small data sets
            more tracks (distinct signs), which is what held-out accuracy grows with.
        seed: everything is a deterministic function of the seed and the other arguments.
        size_range: (min, max) image side in pixels; sizes follow a GTSRB-like distribution
            (median ~43 px, min 25 unless the range says less) clipped to it.
        with_test: also write ``Final_Test/Images`` and ``GT-final_test.csv``.
        n_test: test images (default ``43 * max(1, n_per_class // 3)``), classes uniform.
        progress: show a tqdm progress bar.

    Returns:
        ``Path(root)``; load it with :func:`neonsign.data.load_split`.
    """
    for name, v in (("n_per_class", n_per_class), ("images_per_track", images_per_track)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise NeonsignValueError(f"{name} must be a positive int, got {v!r}")
    lo, hi = (int(v) for v in size_range)
    if not 2 <= lo <= hi:
        raise NeonsignValueError(
            f"size_range must be (min, max) with 2 <= min <= max, got {size_range!r}"
        )
    if n_test is None:
        n_test = 43 * max(1, n_per_class // 3)
    if n_test < 0:
        raise NeonsignValueError(f"n_test must be >= 0, got {n_test!r}")
    root = Path(root)
    train_dir, test_dir = root / "Final_Training", root / "Final_Test"
    if (train_dir.exists() or test_dir.exists()) and not (root / MARKER).exists():
        raise NeonsignValueError(
            f"{root} already holds a data set that synthesize() did not write; pick another folder"
        )
    for d in (train_dir, test_dir, root / "GT-final_test.csv"):
        if d.is_dir():
            shutil.rmtree(d)
        elif d.exists():
            d.unlink()

    from tqdm import tqdm

    bar = tqdm(
        total=43 * n_per_class + (n_test if with_test else 0),
        unit="img",
        disable=not progress,
        desc="synth",
    )
    for class_id in range(43):
        class_dir = train_dir / "Images" / f"{class_id:05d}"
        with file_errors("create the class folder", class_dir):
            class_dir.mkdir(parents=True)
        rows = [_CSV_HEADER + ";ClassId"]
        n_tracks = -(-n_per_class // images_per_track)
        for track in range(n_tracks):
            n = min(images_per_track, n_per_class - track * images_per_track)
            rng = np.random.default_rng([seed, 0, class_id, track])
            for k, (pixels, roi) in enumerate(_make_track(class_id, n, rng, (lo, hi))):
                name = f"{track:05d}_{k:05d}.ppm"
                _write_ppm(class_dir / name, pixels)
                rows.append(_csv_row(name, pixels, roi) + f";{class_id}")
            bar.update(n)
        (class_dir / f"GT-{class_id:05d}.csv").write_text("\n".join(rows) + "\n")
    if with_test:
        _write_test(root, test_dir / "Images", n_test, seed, (lo, hi), bar.update)
    bar.close()
    (root / MARKER).write_text(
        json.dumps(
            {
                "generator": "neonsign.synth",
                "version": 1,
                "seed": seed,
                "n_per_class": n_per_class,
                "images_per_track": images_per_track,
                "size_range": [lo, hi],
                "n_test": n_test if with_test else 0,
            },
            indent=2,
        )
        + "\n"
    )
    return root


def _write_test(
    root: Path,
    images_dir: Path,
    n_test: int,
    seed: int,
    size_range: tuple[int, int],
    step: Callable[[int], object],
) -> None:
    images_dir.mkdir(parents=True)
    labels = np.random.default_rng([seed, 1]).integers(0, 43, size=n_test)
    rows, rows_unlabelled = [_CSV_HEADER + ";ClassId"], [_CSV_HEADER]
    for i, class_id in enumerate(labels.tolist()):
        rng = np.random.default_rng([seed, 2, i])
        ((pixels, roi),) = _make_track(class_id, 1, rng, size_range)
        name = f"{i:05d}.ppm"
        _write_ppm(images_dir / name, pixels)
        rows.append(_csv_row(name, pixels, roi) + f";{class_id}")
        rows_unlabelled.append(_csv_row(name, pixels, roi))
        step(1)
    (root / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    (images_dir / "GT-final_test.test.csv").write_text("\n".join(rows_unlabelled) + "\n")
