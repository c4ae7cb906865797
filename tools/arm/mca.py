#!/usr/bin/env python3
"""llvm-mca throughput of the AArch64 inner loops (FP32 NEON, int8 dotprod/SDOT, int8 I8MM).

Each kernel source is compiled as the wheel compiles it (meson's release build: -O3 and the
kernel flags of meson.build, per-ISA -march) by Debian's aarch64-linux-gnu-gcc; in the assembly
every innermost loop (a backward branch with no label inside its body) is found, and for each
function the loop with the most multiply instructions (FMLA / SDOT / USMMLA) is its inner loop.
llvm-mca (Debian llvm-19) simulates it on Neoverse N2 and V2. The pipe peak is measured by the
same model: a block of 24 independent copies of the multiply instruction gives its best rate per
cycle, so "fraction of peak" = (multiplies per iteration / cycles per iteration) / that rate.

Usage: python3 tools/arm/mca.py [--json OUT] [--llvm-mca llvm-mca-19] [--cc aarch64-linux-gnu-gcc]
Needs the Debian packages llvm-19 and gcc-aarch64-linux-gnu (tools/arm/test.sh installs them).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: meson.build's kernel_c_args (release: -O3) and each kernel's ISA flags.
BASE_FLAGS = ["-O3", "-std=c11", "-fno-math-errno", "-fno-predictive-commoning"]
KERNELS = {
    "neon (fp32)": ("csrc/core/kernels/neon.c", "armv8-a", "fmla", ["-DNS_HAVE_NEON"]),
    "dotprod (int8)": ("csrc/core/kernels/int8_dotprod.c", "armv8.2-a+dotprod", "sdot", []),
    "i8mm (int8)": ("csrc/core/kernels/int8_i8mm.c", "armv8.2-a+dotprod+i8mm", "usmmla", []),
}
CPUS = ("neoverse-n2", "neoverse-v2")
#: Independent copies in the peak block: enough to cover latency x pipes on both cores.
PEAK_COPIES = 24
#: One instance of each multiply for the peak block (v<N> accumulators are independent).
PEAK_INSN = {
    "fmla": "fmla v{n}.4s, v30.4s, v31.s[0]",
    "sdot": "sdot v{n}.4s, v30.16b, v31.4b[0]",
    "usmmla": "usmmla v{n}.4s, v30.16b, v31.16b",
}


def compile_asm(cc: str, source: str, march: str, defines: list[str], out: Path) -> str:
    cmd = [
        cc,
        *BASE_FLAGS,
        f"-march={march}",
        *defines,
        "-Icsrc",
        "-Icsrc/core",
        "-Icsrc/core/kernels",
        "-S",
        source,
        "-o",
        str(out),
    ]
    subprocess.run(cmd, cwd=REPO, check=True)
    return out.read_text()


def inner_loops(asm: str, op: str) -> dict[str, list[str]]:
    """{function: body of its innermost loop with the most `op` instructions}."""
    lines = [ln.split("//")[0].rstrip() for ln in asm.splitlines()]
    best: dict[str, tuple[int, list[str]]] = {}
    func = "?"
    labels: dict[str, int] = {}
    for i, ln in enumerate(lines):
        m = re.match(r"^([A-Za-z_.$][\w.$]*):", ln)
        if m:
            labels[m.group(1)] = i
            if not m.group(1).startswith("."):
                func = m.group(1)
            continue
        b = re.match(r"^\s+(b\.?\w*|cbn?z|tbn?z)\s+.*?([.\w$]+)$", ln)
        if (
            not b
            or b.group(1) in ("bl", "blr", "br")
            or b.group(2) not in labels
            or labels[b.group(2)] >= i
        ):
            continue
        body = [x for x in lines[labels[b.group(2)] + 1 : i + 1] if x.strip()]
        if any(re.match(r"^[.\w$]+:", x) for x in body):
            continue  # not innermost
        body = [x for x in body if not x.lstrip().startswith(".")]
        n = sum(1 for x in body if x.split() and x.split()[0] == op)
        if n and n > best.get(func, (0, []))[0]:
            best[func] = (n, body)
    return {f: body for f, (_, body) in best.items()}


def mca(tool: str, cpu: str, body: list[str], tmp: Path) -> float:
    """Cycles per iteration of `body` on `cpu` (llvm-mca, 200 iterations)."""
    src = tmp / "block.s"
    # GCC prints a byte MOVI's immediate sign-extended (0xffffffffffffff80); LLVM wants 0..255
    fixed = [
        re.sub(
            r"(movi\s+v\d+\.(?:16|8)b,\s*)(0x[0-9a-f]+)",
            lambda m: f"{m.group(1)}{int(m.group(2), 16) & 0xFF:#x}",
            x,
        )
        for x in body
    ]
    src.write_text("\n".join(fixed) + "\n")
    proc = subprocess.run(
        [tool, "-mtriple=aarch64-linux-gnu", f"-mcpu={cpu}", "-iterations=200", str(src)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"llvm-mca failed on {cpu}:\n{proc.stderr}\n--- block:\n{src.read_text()}")
    out = proc.stdout
    iters = int(re.search(r"Iterations:\s+(\d+)", out).group(1))
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    return cycles / iters


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the table as JSON here")
    ap.add_argument("--llvm-mca", default="llvm-mca-19")
    ap.add_argument("--cc", default="aarch64-linux-gnu-gcc")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        peak = {
            (cpu, op): PEAK_COPIES
            / mca(args.llvm_mca, cpu, [PEAK_INSN[op].format(n=n) for n in range(PEAK_COPIES)], tmp)
            for cpu in CPUS
            for op in PEAK_INSN
        }
        for name, (source, march, op, defines) in KERNELS.items():
            asm = compile_asm(args.cc, source, march, defines, tmp / "k.s")
            for func, body in sorted(inner_loops(asm, op).items()):
                n = sum(1 for x in body if x.split() and x.split()[0] == op)
                row = {
                    "kernel": name,
                    "function": func,
                    "op": op,
                    "ops_per_iter": n,
                    "insns_per_iter": len(body),
                }
                for cpu in CPUS:
                    cyc = mca(args.llvm_mca, cpu, body, tmp)
                    row[cpu] = {
                        "cycles_per_iter": round(cyc, 3),
                        "peak_ops_per_cycle": round(peak[(cpu, op)], 3),
                        "fraction_of_peak": round(n / cyc / peak[(cpu, op)], 3),
                    }
                rows.append(row)
    print(
        f"{'kernel':16} {'function':36} {'op':7} {'ops':>4} {'insns':>5}  "
        + "  ".join(f"{c + ' cyc':>16} {'peak':>6}" for c in CPUS)
    )
    for r in rows:
        cells = "  ".join(
            f"{r[c]['cycles_per_iter']:>16.2f} {100 * r[c]['fraction_of_peak']:>5.0f}%"
            for c in CPUS
        )
        print(
            f"{r['kernel']:16} {r['function'][:36]:36} {r['op']:7} {r['ops_per_iter']:>4} "
            f"{r['insns_per_iter']:>5}  {cells}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"cpus": CPUS, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
