"""Write the seed corpora of the fuzz targets (tests/fuzz/fuzz_*.c) into a directory.

Usage: python tests/fuzz/make_seeds.py OUTDIR   -> OUTDIR/<target>/<seed files>

Seeds are small valid (and nearly valid) inputs, so that the fuzzers start from deep inside
the parsers: PPM P6/P3 with maxval 255, 15, 1000 and 65535 (16-bit), comments, CRLF; GTSRB
CSVs (training and test headers, BOM, CRLF); resize headers; weight byte patterns; loader
inputs wrapping the PPM seeds. Standard library only, deterministic.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path


def ppm_p6(w: int, h: int, maxval: int, rng: random.Random, header_extra: bytes = b"") -> bytes:
    head = b"P6" + header_extra + b"\n%d %d\n%d\n" % (w, h, maxval)
    if maxval < 256:
        body = bytes(rng.randint(0, maxval) for _ in range(w * h * 3))
    else:
        body = b"".join(struct.pack(">H", rng.randint(0, maxval)) for _ in range(w * h * 3))
    return head + body


def ppm_p3(w: int, h: int, maxval: int, rng: random.Random) -> bytes:
    samples = " ".join(str(rng.randint(0, maxval)) for _ in range(w * h * 3))
    return b"P3\n# plain\n%d %d\n%d\n" % (w, h, maxval) + samples.encode() + b"\n"


def ppm_seeds(rng: random.Random) -> dict[str, bytes]:
    return {
        "p6_255": ppm_p6(4, 3, 255, rng),
        "p6_15": ppm_p6(3, 2, 15, rng),
        "p6_1000_16bit": ppm_p6(2, 3, 1000, rng),
        "p6_65535_16bit": ppm_p6(3, 3, 65535, rng),
        "p6_comment": ppm_p6(2, 2, 255, rng, header_extra=b" # a comment\r"),
        "p6_1x1": ppm_p6(1, 1, 255, rng),
        "p3_255": ppm_p3(3, 2, 255, rng),
        "p3_7": ppm_p3(2, 2, 7, rng),
        "p3_65535": ppm_p3(2, 1, 65535, rng),
        "truncated": ppm_p6(5, 5, 255, rng)[:40],
        "huge_header": b"P6\n60000 60000\n255\n0123456789",
    }


def csv_seeds() -> dict[str, bytes]:
    train = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    test = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n"
    rows = ["00000_00000.ppm;29;30;5;6;24;25;0", "00000_00001.ppm;30;30;5;5;25;25;42"]
    return {
        "train": (train + "\n".join(rows) + "\n").encode(),
        "train_crlf_bom": ("\ufeff" + train + "\r\n".join(rows) + "\r\n\r\n").encode(),
        "test": (test + "00000.ppm;53;54;6;5;48;49\n").encode(),
        "header_only": train.encode(),
        "bad_roi": (train + "a.ppm;10;10;5;5;10;10;1\n").encode(),
    }


def main(out: Path) -> None:
    rng = random.Random(1234)
    ppm = ppm_seeds(rng)
    corpora: dict[str, dict[str, bytes]] = {"fuzz_ppm": ppm, "fuzz_csv": csv_seeds()}
    # resize: 6 header bytes (src w, h, dst w, h minus 1; stride pad; flags) then pixels
    resize = {}
    for i, hdr in enumerate(
        [
            (31, 31, 31, 31, 0, 0),
            (0, 0, 255, 255, 3, 1),
            (255, 4, 0, 199, 15, 2),
            (99, 199, 31, 31, 1, 3),
            (2, 250, 250, 2, 7, 0),
        ]
    ):
        resize[f"r{i}"] = bytes(hdr) + bytes(rng.randrange(256) for _ in range(64))
    corpora["fuzz_resize"] = resize
    # augment: w, h, n bytes, per image 8 float32 (theta, bright, contrast), then pixels
    augment = {}
    for i, (hdr, maps) in enumerate(
        [
            ((31, 31, 0), [(1, 0, 0, 0, 1, 0, 1, 1)]),
            ((4, 40, 2), [(0.9, -0.4, 0.2, 0.4, 0.9, -0.1, 1.3, 0.7)] * 3),
            ((0, 0, 1), [(3, 2, -9, 5, -7, 40, 0, 2)] * 2),
            ((17, 3, 1), [(float("nan"), 0, float("inf"), 0, 1, -float("inf"), 1e30, -1)] * 2),
        ]
    ):
        floats = b"".join(struct.pack("<8f", *m) for m in maps)
        augment[f"a{i}"] = bytes(hdr) + floats + bytes(rng.randrange(256) for _ in range(64))
    corpora["fuzz_augment"] = augment
    # trainops: n, h, w, c, flags (bf16, nchw, dropout), an 8-byte seed, then element bytes
    trainops = {}
    specials = struct.pack("<6f", 0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1.5)
    for i, hdr in enumerate([(1, 28, 28, 31), (0, 11, 11, 63), (2, 5, 6, 36), (1, 0, 1, 0)]):
        for flags in range(8):
            body = specials + bytes(rng.randrange(256) for _ in range(96))
            trainops[f"t{i}_{flags}"] = bytes((*hdr, flags)) + bytes(range(i, i + 8)) + body
    corpora["fuzz_trainops"] = trainops
    # weights: selector byte then float32 bytes, repeated by the target
    weights = {}
    for i, scale in enumerate([0.05, 1.0, 1e30]):
        sel = bytes([i * 0x15 & 0xFF])
        weights[f"w{i}"] = sel + b"".join(
            struct.pack("<f", rng.uniform(-scale, scale)) for _ in range(97)
        )
    weights["nan_inf"] = b"\x05" + struct.pack(
        "<4f", float("nan"), float("inf"), -float("inf"), 1e-40
    )
    corpora["fuzz_weights"] = weights
    # loader: flags, out_h-1, out_w-1, four int16 ROI corners, then the file
    loader = {}
    for i, (name, data) in enumerate(sorted(ppm.items())):
        flags = i & 7
        roi = struct.pack("<4h", 0, 0, 1, 1) if i % 2 else struct.pack("<4h", 1, 0, 2, 1)
        loader[name] = bytes([flags, 31, 31]) + roi + data
    corpora["fuzz_loader"] = loader
    png = {}  # width-1, height-1, channels-1, then one row per filter type
    for channels in (1, 2, 3, 4):
        rows = b"".join(
            bytes([f]) + bytes(rng.randrange(256) for _ in range(3 * channels)) for f in range(5)
        )
        png[f"rows_{channels}"] = bytes([2, 4, channels - 1]) + rows
    corpora["fuzz_png"] = png
    for target, seeds in corpora.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
