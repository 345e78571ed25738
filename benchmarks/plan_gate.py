"""What the planner measures on this machine: the accuracy gate's verdicts and the GEMM rates behind them.

    python benchmarks/plan_gate.py [--schedule polar-express-5] [--shape 256x1024] [--dtype bf16]
                                   [--threads 2] [--out benchmarks/results/plan_gate_cpu.csv]

Accuracy: the Gram form with ``R``, ``Q`` in the working precision (the schedule's restarts, and none) and in the
default wider precision, beside the standard form, on each of the gate's matrices
(:func:`nsiter.plan.gate_matrices` at ``--shape``): the rounding error (:func:`nsiter.rounding.rounding_errors`,
2-norm distance to the float64 run) and its ratio to the standard form's on the same matrix.  Both GEMM paths
(native, emulated) are run.

Rates: one 1024-square product per dtype (bf16, fp16, fp32, fp64), median of 5 after a warm-up, and the
first (cold) and a warm native bf16 product at 256: the set-up that the kernel probe must not time.
Prints the rows; asserts nothing; writes a file only with ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nsiter._io import atomic_write_csv, check_writable
from nsiter.bench import parse_shape
from nsiter.dtypes import dtype_name, torch_dtype
from nsiter.evaluate import orthogonalize, resolve_schedule
from nsiter.gram import default_gram_dtype
from nsiter.kernels import device_name
from nsiter.measure import rounding_errors
from nsiter.plan import gate_matrices

SPECTRA = (
    "gaussian",
    "log-uniform 1e-3",
    "log-uniform 1e-10",
    "half zero",
    "cluster 1.8e-7",
)  # gate_matrices


def gate_rows(schedule: str, m: int, n: int, dtype: str) -> list[dict]:
    sched = resolve_schedule(schedule)
    G = gate_matrices(m, n)
    exact = orthogonalize(G, sched, dtype=torch.float64, method="standard")
    rows = []
    for gemm, emulate in (("native", False), ("emulated", True)):
        wide = default_gram_dtype(dtype, gemm)
        variants = {"standard": {"method": "standard"}}
        for gdt in dict.fromkeys((dtype_name(dtype), wide)):
            for rs in dict.fromkeys((tuple(sched.restarts), ())):
                variants[f"gram R,Q {gdt}, restarts {list(rs)}"] = {
                    "method": "gram",
                    "gram_dtype": gdt,
                    "restarts": rs,
                }
        errs = {k: rounding_errors(orthogonalize(G, sched, dtype=dtype, emulate=emulate, **kw), exact)
                for k, kw in variants.items()}  # fmt: skip
        for k, e in errs.items():
            for spectrum, v, s in zip(SPECTRA, e, errs["standard"], strict=True):
                rows.append({"kind": "gate", "schedule": sched.name, "shape": f"{m}x{n}", "dtype": dtype_name(dtype),
                             "gemm": gemm, "variant": k, "spectrum": spectrum, "error": v,
                             "ratio_to_standard": v / s})  # fmt: skip
    return rows


def _ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def rate_rows() -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    for name in ("bfloat16", "float16", "float32", "float64"):
        A = torch.randn(1024, 1024, generator=gen).to(torch_dtype(name))
        ms = _ms(lambda A=A: A @ A)
        rows.append({"kind": "gemm 1024", "dtype": name, "ms": ms, "tflops": 2 * 1024**3 / ms / 1e9})
    B = torch.randn(256, 256, generator=gen).to(torch.bfloat16)  # a size no product above used
    t0 = time.perf_counter()
    B @ B
    cold = 1e3 * (time.perf_counter() - t0)
    rows.append({"kind": "bf16 256, first call", "dtype": "bfloat16", "ms": cold})
    rows.append({"kind": "bf16 256, warm", "dtype": "bfloat16", "ms": _ms(lambda: B @ B)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schedule", default="polar-express-5")
    ap.add_argument("--shape", default="256x1024", type=parse_shape)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.out is not None:
        check_writable(args.out)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rates = rate_rows()  # first: the cold bf16 call must be this process's first bf16 product at 256
    rows = gate_rows(args.schedule, args.shape.m, args.shape.n, args.dtype) + rates
    machine = device_name("cpu")
    for r in rows:
        r["device"] = machine
        print(
            "  ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items() if k != "device"
            )
        )
    print(f"device: {machine}; torch {torch.__version__}")
    if args.out is not None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        atomic_write_csv(args.out, columns, ({k: r.get(k, "") for k in columns} for r in rows), parents=True)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
