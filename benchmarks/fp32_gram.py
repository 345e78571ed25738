"""Why ``method="auto"`` keeps float32 work in the standard form at aspect 4 (the float32 speed-up target).

    python benchmarks/fp32_gram.py [--threads 2] [--out benchmarks/results/fp32_gram_cpu.csv]

Accuracy: on 256x1024 matrices (log-uniform spectra down to 1e-3 and 1e-8, rank 64, Gaussian), the
rounding error (2-norm distance to the float64 run of the same schedule) of every float32 variant, and
its ratio to the standard form's on the same matrix:

- ``standard``; ``gram R,Q fp64`` (the float32 default's Gram side, no restarts);
- ``gram R,Q fp32`` with no restart, with restarts after (2, 3), (1, 3) and (1, 2);
- ``switch K=3``: ``R``, ``Q`` in float64 for the first three steps, then rounded to float32 (written
  here with plain products; nsiter does not offer it, and this is why);
- the rounding model's prediction for the fp32 Gram side with (2, 3) on [1e-3, 1] and from 0.

Speed: the same variants at 1024x4096 against the plain loop (``nsiter.bench.reference_loop``), in one
process, median of ``--repeats``.  Prints ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nsiter import matrices
from nsiter._io import atomic_write_csv
from nsiter.bench import reference_loop
from nsiter.evaluate import orthogonalize, resolve_schedule
from nsiter.kernels import device_name
from nsiter.measure import rounding_error
from nsiter.restarts import predict_error, standard_error

SCHEDULES = ("muon", "polar-express-5", "polar-express")
VARIANTS = {  # label -> orthogonalize options (float32 work)
    "standard": {"method": "standard"},
    "gram R,Q fp64": {"method": "gram", "gram_dtype": "float64"},
    "gram R,Q fp32": {"method": "gram", "gram_dtype": "float32", "restarts": ()},
    "gram R,Q fp32, restarts 2,3": {"method": "gram", "gram_dtype": "float32", "restarts": (2, 3)},
    "gram R,Q fp32, restarts 1,3": {"method": "gram", "gram_dtype": "float32", "restarts": (1, 3)},
    "gram R,Q fp32, restarts 1,2": {"method": "gram", "gram_dtype": "float32", "restarts": (1, 2)},
}


def _spectra() -> dict[str, torch.Tensor]:
    return {
        "logunif-1e-3": matrices.log_uniform(256, 1024, 1e-3, seed=1),
        "logunif-1e-8": matrices.log_uniform(256, 1024, 1e-8, seed=2),
        "rank-64": matrices.rank_deficient(256, 1024, 64, seed=3),
        "gaussian": torch.randn(256, 1024, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
    }


def switch(G: torch.Tensor, sched, k: int) -> torch.Tensor:
    """The Gram form with ``R``, ``Q`` in float64 for ``k`` steps, then in float32 (X in float32)."""
    X = G.float()
    X = X / (X.double().norm() * sched.normalization.scale).float()
    R, Q = X.double() @ X.double().mT, None
    eye = torch.eye(R.shape[-1], dtype=torch.float64)
    for j, p in enumerate(sched.steps, start=1):
        if j == k + 1:
            R, Q = R.float(), (None if Q is None else Q.float())
            eye = eye.float()
        c = [float(v) for v in p.coefficients]
        W = torch.zeros_like(R)
        for cj in reversed(c[1:]):
            W = W @ R + cj * R
        Z = c[0] * eye + W
        Q = Z if Q is None else Z @ Q
        if j < len(sched):
            R = Z @ R @ Z
    return Q.float() @ X


def _error(X: torch.Tensor, exact: torch.Tensor) -> float:
    return rounding_error(X, exact)


def accuracy_rows() -> list[dict]:
    rows = []
    for name in SCHEDULES:
        sched = resolve_schedule(name)
        for spectrum, G in _spectra().items():
            G = G.float()
            exact = orthogonalize(G.double(), sched, dtype=torch.float64, method="standard")
            errs = {
                v: _error(orthogonalize(G, sched, dtype=torch.float32, **kw), exact)
                for v, kw in VARIANTS.items()
            }
            errs["switch K=3"] = _error(switch(G, sched, 3), exact)
            for v, e in errs.items():
                rows.append({"kind": "accuracy", "schedule": name, "case": spectrum, "variant": v, "value": e,
                             "ratio_to_standard": e / errs["standard"]})  # fmt: skip
        for lo in (1e-3, 0.0):
            pred = predict_error(sched, (2, 3), dtype="float32", gram_dtype="float32", lo=lo).error
            rows.append({"kind": "model", "schedule": name, "case": f"[{lo:g}, 1]", "variant": "gram R,Q fp32, restarts 2,3",
                         "value": pred, "ratio_to_standard": pred / standard_error(sched, dtype="float32", lo=lo)})  # fmt: skip
    return rows


def speed_rows(repeats: int) -> list[dict]:
    rows = []
    G = torch.randn(1024, 4096, generator=torch.Generator().manual_seed(0))
    for name in SCHEDULES[:2]:
        sched = resolve_schedule(name)
        calls = {"plain loop": lambda s=sched: reference_loop(G, s, torch.float32)}
        calls |= {
            v: (lambda s=sched, kw=kw: orthogonalize(G, s, dtype=torch.float32, **kw))
            for v, kw in VARIANTS.items()
        }
        times: dict[str, list[float]] = {v: [] for v in calls}
        for fn in calls.values():
            fn()  # warm-up (and the kernel probe)
        for _ in range(repeats):  # interleaved, so load hits every variant alike
            for v, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                times[v].append(time.perf_counter() - t0)
        plain = statistics.median(times["plain loop"])
        for v, ts in times.items():
            ms = statistics.median(ts) * 1e3
            rows.append({"kind": "speed", "schedule": name, "case": "1024x4096", "variant": v, "value": ms,
                         "ratio_to_standard": plain * 1e3 / ms})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/fp32_gram_cpu.csv")
    args = ap.parse_args()
    if not 1 <= args.threads <= 256 or not 1 <= args.repeats <= 100:
        ap.error(f"--threads must be in 1..256 and --repeats in 1..100, got {args.threads}, {args.repeats}")
    torch.set_num_threads(args.threads)
    rows = accuracy_rows() + speed_rows(args.repeats)
    for r in rows:
        r["device"] = device_name("cpu")
    for r in rows:
        unit = {"accuracy": "error", "model": "predicted", "speed": "ms"}[r["kind"]]
        rel = "x standard" if r["kind"] != "speed" else "x faster than the plain loop"
        print(
            f"{r['schedule']:16} {r['case']:13} {r['variant']:30} {unit} {r['value']:.3g}  {r['ratio_to_standard']:.3g} {rel}"
        )
    atomic_write_csv(args.out, list(rows[0]), rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
