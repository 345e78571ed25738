"""Time one Muon optimizer step on a transformer's matrices: nsiter (batched and per parameter), torch, the peer.

The parameters of ``layers`` transformer blocks of width ``d`` (default 12 blocks, d = 256): per block a fused
QKV projection ``(3d, d)``, the attention output ``(d, d)``, the MLP's ``(4d, d)`` and ``(d, 4d)``.  nsiter's
``Muon`` orthogonalizes the fused QKV as three ``(d, d)`` row blocks (``split_sizes``); ``torch.optim.Muon`` and
the gram-newton-schulz peer get the three blocks as separate ``(d, d)`` parameters, which is the same update
(each block its own polar factor, scaled by its own shape).  With 12 blocks that is 48 matrices of 256 x 256 and
24 of 1024 x 256 (up to transpose) per step, Jordan's quintic (3.4445, -4.7750, 2.0315) five times in bfloat16
everywhere (the peer: float16, its own choice), Nesterov momentum 0.95, ``lr`` 0.02, no weight decay,
update scale ``sqrt(max(1, rows / cols))``.

Variants, timed interleaved (each round steps every optimizer once, in turn, on the same gradients; medians
and minima over rounds, after warm-up steps that also decide nsiter's plans):

- ``nsiter``: ``nsiter.optim.Muon`` (batched by shape, the default), ``check_finite=False``;
- ``nsiter_loop``: the same with ``batch=False`` (one ``orthogonalize`` call per matrix);
- ``torch``: ``torch.optim.Muon`` (torch >= 2.9) with the same coefficients, 5 steps;
- ``peer``: ``gram_newton_schulz.Muon`` (when importable) with the same coefficients, restart after step 2,
  ``ns_use_kernels=False`` off CUDA;
- ``nsiter_compiled``: nsiter's step under ``torch.compile(fullgraph=True)`` (when it compiles here), with
  its compile time.

Rounding error: each optimizer's first step from zero momentum moves ``W`` by ``-lr s O`` with ``O`` its
orthogonalization of ``G`` (all three momentum conventions give an input proportional to ``G`` at the first
step); ``err`` is the largest 2-norm of ``O - O_64`` over the matrices, ``O_64`` the same five quintic steps
in float64 (:func:`nsiter.orthogonalize` with ``dtype=torch.float64``).

    python benchmarks/muon_step.py [--quick] [--threads 2] [--device cuda] [--out FILE.csv]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

from nsiter import orthogonalize
from nsiter._io import atomic_write_csv
from nsiter.kernels import device_name
from nsiter.optim import Muon

COEFFICIENTS = (3.4445, -4.7750, 2.0315)
LR, MOMENTUM = 0.02, 0.95
COLUMNS = (
    "variant",
    "ms",
    "min_ms",
    "speedup_vs_torch",
    "err",
    "err_vs_torch",
    "compile_s",
    "matrices",
    "shapes",
    "rounds",
    "device",
    "torch",
    "threads",
    "load_1min",
    "note",
)


def model_shapes(layers: int, d: int) -> list[tuple[int, int]]:
    """The Muon parameters of ``layers`` blocks: fused QKV (3d, d), output (d, d), MLP (4d, d) and (d, 4d)."""
    return [s for _ in range(layers) for s in ((3 * d, d), (d, d), (4 * d, d), (d, 4 * d))]


def _timer(device: torch.device) -> Callable[[Callable[[], Any]], float]:
    """Milliseconds of one call: CUDA events on a GPU, ``perf_counter`` on the CPU."""
    if device.type == "cuda":

        def timed(fn: Callable[[], Any]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end)

        return timed

    def timed(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - t0)

    return timed


class _Variant:
    """One optimizer over its own copy of the parameters; ``blocks`` maps its parameters to the model's
    matrices (a fused QKV is one nsiter parameter, three torch/peer parameters)."""

    def __init__(self, name: str, params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, split: bool):
        self.name, self.params, self.opt, self.split = name, params, opt, split
        self.step: Callable[[], Any] = opt.step
        self.compile_s: float | None = None
        self.note = ""

    def set_grads(self, grads: list[torch.Tensor], d: int) -> None:
        it = iter(self.params)
        for G in grads:
            if G.shape[0] == 3 * G.shape[1] and not self.split:
                for part in G.split(d):
                    next(it).grad = part.clone()
            else:
                next(it).grad = G.clone()

    def directions(self, before: list[torch.Tensor], d: int) -> list[torch.Tensor]:
        """``O = -(W_1 - W_0) / (lr s)`` per model matrix (a split QKV's three parameters joined)."""
        out = []
        for p, w0 in zip(self.params, before, strict=True):
            rows = (
                p.shape[1] if p.shape[0] == 3 * p.shape[1] else p.shape[0]
            )  # a split QKV: its blocks' scale
            s = math.sqrt(max(1.0, rows / p.shape[1]))
            out.append(-(p.detach().double() - w0.double()) / (LR * s))
        if self.split:
            return out
        # unsplit layout, 6 parameters a block: Q, K, V, output, MLP in, MLP out
        joined = []
        for b in range(0, len(out), 6):
            joined.extend([torch.cat(out[b : b + 3]), *out[b + 3 : b + 6]])
        return joined


def _make_params(shapes: list[tuple[int, int]], split: bool, d: int, device: torch.device) -> list:
    gen = torch.Generator().manual_seed(0)
    mats = [torch.randn(*s, generator=gen) / math.sqrt(s[1]) for s in shapes]
    out = []
    for W in mats:
        parts = W.split(d) if (W.shape[0] == 3 * W.shape[1] and not split) else [W]
        out.extend(torch.nn.Parameter(P.clone().to(device)) for P in parts)
    return out


def _exact(G: torch.Tensor, d: int) -> torch.Tensor:
    """The float64 run of the five quintic steps on ``G``, a fused QKV block by block."""
    parts = G.double().split(d) if G.shape[0] == 3 * G.shape[1] else [G.double()]
    return torch.cat([orthogonalize(P, "muon", dtype=torch.float64, method="standard") for P in parts])


def _variants(
    shapes, d: int, device: torch.device, compile_step: bool, peer: bool
) -> tuple[list[_Variant], list[str]]:
    notes = []
    variants = []
    for name, batch in (("nsiter", True), ("nsiter_loop", False)):
        ps = _make_params(shapes, True, d, device)
        qkv = {p: (d, d, d) for p in ps if p.shape[0] == 3 * p.shape[1]}
        opt = Muon(ps, lr=LR, momentum=MOMENTUM, batch=batch, split_sizes=qkv, check_finite=False)
        variants.append(_Variant(name, ps, opt, split=True))
    if hasattr(torch.optim, "Muon"):
        ps = _make_params(shapes, False, d, device)
        opt = torch.optim.Muon(
            ps, lr=LR, weight_decay=0.0, momentum=MOMENTUM, ns_coefficients=COEFFICIENTS, ns_steps=5
        )
        variants.append(_Variant("torch", ps, opt, split=False))
    else:
        notes.append(f"torch.optim.Muon not in torch {torch.__version__} (2.9+)")
    try:
        import gram_newton_schulz
    except ImportError:
        notes.append("peer not measured: gram-newton-schulz is not installed")
        peer = False
    if peer:
        ps = _make_params(shapes, False, d, device)
        opt = gram_newton_schulz.Muon(
            ps,
            lr=LR,
            weight_decay=0.0,
            momentum=MOMENTUM,
            adjust_lr=lambda lr, shape: lr * math.sqrt(max(1.0, shape[0] / shape[1])),
            ns_coefficients=[list(COEFFICIENTS)] * 5,
            ns_use_kernels=device.type == "cuda",
            gram_newton_schulz_restart_iterations=[2],
        )
        variants.append(_Variant("peer", ps, opt, split=False))
    if compile_step:
        ps = _make_params(shapes, True, d, device)
        qkv = {p: (d, d, d) for p in ps if p.shape[0] == 3 * p.shape[1]}
        opt = Muon(ps, lr=LR, momentum=MOMENTUM, split_sizes=qkv, check_finite=False)
        variants.append(_Variant("nsiter_compiled", ps, opt, split=True))
    return variants, notes


def run(
    *,
    layers: int = 12,
    d: int = 256,
    rounds: int = 15,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    compile_step: bool = True,
    peer: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per variant (``COLUMNS``): median and minimum step time, speed and error against torch's."""
    dev = torch.device(device)
    shapes = model_shapes(layers, d)
    variants, notes = _variants(shapes, d, dev, compile_step, peer)
    gen = torch.Generator().manual_seed(1)
    grads = [[torch.randn(*s, generator=gen).to(dev) for s in shapes] for _ in range(max(1, warmup) + 1)]
    exact = [_exact(G, d) for G in grads[0]]
    timed = _timer(dev)
    errors: dict[str, float] = {}
    for v in variants:  # first step: the rounding error of the update, and plans decided
        before = [p.detach().clone() for p in v.params]
        v.set_grads(grads[0], d)
        try:
            v.opt.step()
        except Exception as exc:  # a peer or torch build that cannot run here: say why, time the others
            v.note, v.step = f"step failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", None
            continue
        ortho = v.directions(before, d)
        errors[v.name] = max(
            float(torch.linalg.matrix_norm((a - b).cpu(), 2)) for a, b in zip(ortho, exact, strict=True)
        )
        if v.name == "nsiter_compiled":
            try:
                torch._dynamo.reset()
                step = torch.compile(v.opt.step, fullgraph=True)
                v.set_grads(grads[1 % len(grads)], d)
                t0 = time.perf_counter()
                step()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                v.compile_s = time.perf_counter() - t0
                v.step = step
            except Exception as exc:  # report why, time the others
                v.note = f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                v.step = None
        if progress is not None:
            progress(f"{v.name}: first step done, error {errors[v.name]:.3g}")
    live = [v for v in variants if v.step is not None]
    for i in range(warmup):
        for v in live:
            v.set_grads(grads[1 + i % max(1, warmup)], d)
            v.step()
    times: dict[str, list[float]] = {v.name: [] for v in live}
    for r in range(rounds):
        for v in live:
            v.set_grads(grads[r % len(grads)], d)
            times[v.name].append(timed(v.step))
    med = {k: statistics.median(t) for k, t in times.items()}
    rows = []
    for v in variants:
        row = dict.fromkeys(COLUMNS)
        row.update(
            variant=v.name,
            err=errors.get(v.name),
            compile_s=v.compile_s,
            matrices=len(shapes) + 2 * layers,
            shapes=f"{layers} blocks of d={d}: {3 * layers + layers} x {d}x{d}, {2 * layers} x {4 * d}x{d}",
            rounds=rounds,
            device=device_name(dev),
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            load_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            note="; ".join(x for x in [v.note, *notes] if x),
        )
        if v.name in med:
            row["ms"], row["min_ms"] = med[v.name], min(times[v.name])
            if "torch" in med:
                row["speedup_vs_torch"] = med["torch"] / med[v.name]
        if "torch" in errors and v.name in errors:
            row["err_vs_torch"] = errors[v.name] / errors["torch"]
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the rows."""
    cols = ("variant", "ms", "min_ms", "speedup_vs_torch", "err", "err_vs_torch", "compile_s")

    def cell(v: Any) -> str:
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    cells = [list(cols)] + [[cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    if rows:
        lines.append(
            f"{rows[0]['shapes']}; {rows[0]['device']}; torch {rows[0]['torch']}; 1-min load {rows[-1]['load_1min']}"
        )
        lines.extend(f"{r['variant']}: {r['note']}" for r in rows if r["note"])
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    cells = ({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS} for r in rows)
    return atomic_write_csv(path, COLUMNS, cells, parents=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 blocks of d=128, 5 rounds, no compile")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument(
        "--no-peer", action="store_true", help="skip gram_newton_schulz.Muon (it compiles itself)"
    )
    ap.add_argument("--out", default=None, help="also write the rows as CSV")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    kw: dict[str, Any] = {"layers": args.layers, "d": args.d, "rounds": args.rounds}
    if args.quick:
        kw = {"layers": 2, "d": 128, "rounds": 5, "warmup": 1}
    rows = run(
        **kw,
        device=args.device,
        compile_step=not (args.quick or args.no_compile),
        peer=not args.no_peer,
        progress=print,
    )
    print(format_rows(rows))
    if args.out:
        print(f"wrote {write_csv(rows, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
