"""``neonsign export-onnx``: a model directory (or weights file) to an ONNX file, float32 or,
for a quantized directory, QDQ int8 (:func:`neonsign.onnx_export.export_onnx`)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export TrafficSignNet to ONNX (opset 17, input x (N,3,32,32), output logits (N,43)): "
        "float32, or a QDQ int8 model for a quantized directory (neonsign quantize). Needs the "
        "onnx package (pip install 'neonsign[onnx]')."
    )
    parser.add_argument("--model", required=True, help="model directory, .safetensors or .pth")
    parser.add_argument("--out", required=True, help="the .onnx file to write")


def run(args: argparse.Namespace) -> int:
    from ..onnx_export import export_onnx

    path, kind = export_onnx(args.model, args.out)
    print(f"wrote {path} ({kind})")
    return 0
