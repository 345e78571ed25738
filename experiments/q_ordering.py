"""Which Q ordering of the Gram form is more accurate, and why.

The Gram form (``nsiter.gram.gram_steps``) accumulates ``Q_{k+1} = q_k(R_k) Q_k``.  Written with
``W_k = q_k(R_k) - c_0 I``, nsiter's kernel updates ``Q <- c_0 Q + W Q`` (``q_order="zq"``); the
published kernel (Zhang, Amsel, Chen & Dao 2026, package ``gram-newton-schulz``, ``Q = a Q + Q Z``)
updates ``Q <- c_0 Q + Q W`` (``"qz"``).  ``W`` and ``Q`` are polynomials in ``R_0``, so both compute the
same matrix in exact arithmetic with the same flops; they round differently.

**Measurement** (table ``runs``).  For each registry schedule, its stored restarts, no restart and every
single restart, in fp16 and bf16 with every product rounded to the dtype after a float32 accumulation
(emulated on the CPU: the arithmetic of a GPU's low-precision GEMM), ``R`` and ``Q`` in the working dtype
(the GPU situation) or in float32, full or blocked-symmetric products, both orderings: the 2-norm
distance of ``X_T`` to the float64 run of the same schedule, per matrix of a seeded batch, as a multiple
of the standard form's on the same matrix in the same arithmetic (``nsiter.evaluate.orthogonalize``,
``method="standard"``).  Spectra: log-uniform down to 1e-3 and 1e-10, half rank deficient, three
clusters down to 1e-6.

**First-order model** (table ``model``; :func:`first_order_error`).  In the eigenbasis of
``R_0 = U diag(x^2) U^T`` every matrix of the Gram form is diagonal in exact arithmetic, and a
perturbation is carried entry by entry: ``delta q(R)_{ij} = q[x_i^2, x_j^2] delta R_{ij}`` (the divided
difference; Daleckii & Krein 1965), a product ``A E B`` of diagonal ``A, B`` scales entry ``(i, j)`` by
``a_i b_j``.  Each stored result (``W``, ``Q``, ``T = R q(R)``, ``R``, ``R_0``, ``X``) adds an independent
rounding error whose entries have variance ``u^2 ||M||_F^2 / (3 m^2)``.  The only difference between the
orderings is on which side of ``Q``'s error the later factors land: with ``"zq"`` the error ``E`` of
``Q_{a+1}`` ends as ``diag(g) E diag(x)`` with ``g = phi_L(x) / phi_{a+1}(x)`` the gain of the
segment's remaining steps, with ``"qz"`` as ``E diag(g x)``; the error ``delta W`` of step ``a`` ends as
``diag(g) dW diag(phi_a(x))`` (zq) or ``diag(phi_a(x) / x) dW diag(g x)`` (qz).  Both gains
tend to products of slopes ``prod c_0`` as ``x -> 0``, of the later steps for zq, of the earlier steps
for qz.  The model's ``||delta X_T||_2`` is the larger of the largest row and column norm of the entries'
standard deviations.  It ignores the restart's coupling of ``X``'s error into the next ``R``, the same
for both orderings.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/NAME.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools
import math
import warnings

import numpy as np

NAME = "q_ordering"
PARAMS = {
    "schedules": ["muon", "polar-express", "polar-express-5", "cesista-5", "nsiter-5step", "nsiter-7step"],
    "dtypes": ["fp16", "bf16"],
    "gram": ["working", "float32"],
    "products": ["full", "symmetric"],
    "shape": [64, 256],
    "batch": 3,
    "block": 16,
    "spectra": ["logunif-1e-3", "logunif-1e-10", "rank-half", "clustered"],
    "tie": 1.1,
}
QUICK = {
    "schedules": ["polar-express-5"],
    "shape": [16, 64],
    "batch": 2,
    "block": 8,
    "spectra": ["logunif-1e-3"],
}
SEED = 0
ORDERS = ("zq", "qz")


def _matrix(spectrum: str, m: int, n: int, seed: int, batch: int):
    from nsiter import matrices

    makers = {
        "logunif-1e-3": lambda: matrices.log_uniform(m, n, 1e-3, seed, batch=batch),
        "logunif-1e-10": lambda: matrices.log_uniform(m, n, 1e-10, seed, batch=batch),
        "rank-half": lambda: matrices.rank_deficient(m, n, m // 2, seed, batch=batch),
        "clustered": lambda: matrices.clustered(m, n, (1e-6, 1e-3, 1.0), seed, batch=batch),
    }
    if spectrum not in makers:
        raise ValueError(f"unknown spectrum {spectrum!r}; known: {', '.join(makers)}")
    return makers[spectrum]()


def _distances(X, ref) -> list[float]:
    """Per matrix ``||X - X^(float64)||_2`` (``inf`` when ``X`` has a non-finite entry)."""
    from nsiter.measure import rounding_errors

    return rounding_errors(X, ref)


def gram_run(G, sched, dtype: str, gram: str, restarts, q_order: str, block: int | None):
    """``X_T`` of the Gram form in emulated ``dtype`` arithmetic with ``R``, ``Q`` in ``gram``."""
    import torch

    from nsiter.dtypes import torch_dtype
    from nsiter.evaluate import normalize
    from nsiter.gram import apply_q, gram_steps
    from nsiter.kernels import Products, kernel_choice

    symmetric = block if block else False
    ops = Products(
        kernel_choice("cpu", dtype, G.shape[-2], emulate=True, symmetric=symmetric), dtype, G.device, gram
    )
    X0 = normalize(G, sched.normalization, torch_dtype(dtype)).to(ops.compute)
    *_, (X, Q) = gram_steps(X0, sched.steps, ops, restarts=restarts, q_order=q_order)
    return apply_q(Q, X, ops, torch.empty_like(X))


def _placements(sched) -> list[tuple[int, ...]]:
    """The stored restarts, none, and every single restart."""
    out = [tuple(sched.restarts), ()] + [(r,) for r in range(1, len(sched))]
    return list(dict.fromkeys(out))


def _unit(ctx, name: str, spectrum: str) -> list[dict]:
    import torch

    from nsiter import load_schedule
    from nsiter.evaluate import orthogonalize
    from nsiter.restarts import label

    p = ctx.params
    m, n = p["shape"]
    sched = load_schedule(name)
    G = _matrix(spectrum, m, n, ctx.seed, p["batch"])
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow is a measured result here
        ref = orthogonalize(G, sched, dtype=torch.float64, method="standard")
        for dt, products in itertools.product(p["dtypes"], p["products"]):
            block = p["block"] if products == "symmetric" else None
            std = orthogonalize(G, sched, dtype=dt, method="standard", emulate=True, symmetric=block or False)
            std_d = _distances(std, ref)
            for gram in p["gram"]:
                gdt = dt if gram == "working" else "float32"
                cands = _placements(sched) if gram == "working" else _placements(sched)[:2]
                for rs, order in itertools.product(cands, ORDERS):
                    d = _distances(gram_run(G, sched, dt, gdt, rs, order, block), ref)
                    for i, (e, s) in enumerate(zip(d, std_d, strict=True)):
                        rows.append(
                            {
                                "schedule": name,
                                "restarts": label(rs),
                                "stored": rs == tuple(sched.restarts),
                                "dtype": dt,
                                "gram": gram,
                                "products": products,
                                "spectrum": spectrum,
                                "matrix": i,
                                "order": order,
                                "error": e,
                                "standard": s,
                                "ratio": e / s,
                            }
                        )
    return rows


# ------------------------------------------------------------------------------- first-order model
def _divided(q: np.ndarray, coeffs: list[float], lam: np.ndarray) -> np.ndarray:
    """``q[lam_i, lam_j]``: ``(q(lam_i) - q(lam_j)) / (lam_i - lam_j)``, ``q'(lam_i)`` on the diagonal."""
    dq = np.polynomial.polynomial.polyval(lam, np.polynomial.polynomial.polyder(coeffs))
    diff = lam[:, None] - lam[None, :]
    close = np.abs(diff) <= 1e-12 * np.maximum(np.abs(lam[:, None]), np.abs(lam[None, :])) + 1e-300
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (q[:, None] - q[None, :]) / diff
    return np.where(close, 0.5 * (dq[:, None] + dq[None, :]), out)


def first_order_error(x, steps, restarts, *, u_gram: float, u_x: float, q_order: str) -> float:
    """First-order model of ``||X_T - X_T^exact||_2`` of the Gram form (see the module docstring).

    Args:
        x: singular values of the normalized ``X_0`` (zeros allowed).
        steps: coefficient lists ``(c_0, ..., c_l)`` of ``q_k``.
        restarts: steps after which ``X <- Q X``, ``R <- X X^T``, ``Q <- I``.
        u_gram, u_x: unit roundoffs of the Gram side (``R``, ``Q``, ``W``, ``T``) and of ``X``.
        q_order: ``"zq"`` or ``"qz"``.

    Every stored result adds one rounding source; ``A``, ``B``, ``C`` hold, per source, the entrywise
    multipliers of its noise in ``delta R``, ``delta W`` and ``delta Q`` (eigenbasis of ``R_0``).
    """
    if q_order not in ORDERS:
        raise ValueError(f"q_order must be one of {ORDERS}, got {q_order!r}")
    y = np.asarray(x, dtype=float)
    m = y.size

    def noise(diagonal: np.ndarray, u: float) -> float:  # entry variance of fl(M) - M, M = diag(...)
        return u * u * float(np.sum(diagonal * diagonal)) / (3.0 * m * m)

    var_out = np.full((m, m), noise(y, u_x))  # X_0 stored in the working dtype
    bounds = [0, *sorted(set(restarts)), len(steps)]
    for s, e in itertools.pairwise(bounds):
        seg = [[float(t) for t in c] for c in steps[s:e]]
        size = 1 + 4 * len(seg)
        A, B, C = (np.zeros((size, m, m)) for _ in range(3))
        v = np.zeros(size)
        lam, Qd = y * y, np.ones(m)
        A[0], v[0], k = 1.0, noise(lam, u_gram), 1  # R_s = fl(X_s X_s^T)
        for a, c in enumerate(seg):
            q = np.polynomial.polynomial.polyval(lam, c)
            B[:] = _divided(q, c, lam) * A if len(c) > 1 else 0.0
            if len(c) > 1:  # W = q(R) - c_0 I, stored
                B[k], v[k], k = 1.0, noise(q - c[0], u_gram), k + 1
            if a == 0:  # Q = W + c_0 I
                C[:] = B
            elif q_order == "zq":  # Q' = q(R) Q: errors of Q scaled on the left, dW on the right by Q
                C[:] = q[:, None] * C + B * Qd[None, :]
            else:  # Q' = Q q(R)
                C[:] = C * q[None, :] + Qd[:, None] * B
            Qd = Qd * q
            C[k], v[k], k = 1.0, noise(Qd, u_gram), k + 1
            if a < len(seg) - 1:  # T = R q(R) and R' = q(R) T, both stored
                T = A * q[None, :] + lam[:, None] * B
                T[k], v[k], k = 1.0, noise(lam * q, u_gram), k + 1
                A = q[:, None] * T + B * (lam * q)[None, :]
                A[k], v[k], k = 1.0, noise(lam * q * q, u_gram), k + 1
            lam = lam * q * q
        # X_e = Q X_s: delta X = delta Q diag(y) + diag(Qd) delta X_s, and X_e is stored
        var_out = (Qd[:, None] ** 2) * var_out + np.einsum("s,sij->ij", v, (C * y[None, None, :]) ** 2)
        y = Qd * y
        var_out = var_out + noise(y, u_x)
    return float(max(np.sqrt(var_out.sum(axis=1)).max(), np.sqrt(var_out.sum(axis=0)).max()))


def _model_rows(ctx, name: str, spectrum: str) -> list[dict]:
    """The first-order model per placement and Gram precision, on the singular values of matrix 0."""
    import torch

    from nsiter import load_schedule
    from nsiter.dtypes import unit_roundoff
    from nsiter.evaluate import normalize
    from nsiter.restarts import label

    p = ctx.params
    m, n = p["shape"]
    sched = load_schedule(name)
    G = _matrix(spectrum, m, n, ctx.seed, p["batch"])
    x = torch.linalg.svdvals(normalize(G, sched.normalization, torch.float64))[0].numpy()
    steps = [list(map(float, q.coefficients)) for q in sched.steps]
    rows = []
    for gram, dt in itertools.product(p["gram"], p["dtypes"]):
        u = unit_roundoff(dt)
        u_gram = u if gram == "working" else unit_roundoff("float32")
        cands = _placements(sched) if gram == "working" else _placements(sched)[:2]
        for rs in cands:
            e = {o: first_order_error(x, steps, rs, u_gram=u_gram, u_x=u, q_order=o) for o in ORDERS}
            rows.append(
                {
                    "schedule": name,
                    "restarts": label(rs),
                    "dtype": dt,
                    "gram": gram,
                    "spectrum": spectrum,
                    "model_zq": e["zq"],
                    "model_qz": e["qz"],
                }
            )
    return rows


def compute(ctx) -> dict:
    p = ctx.params
    runs, model = [], []
    for name, spectrum in itertools.product(p["schedules"], p["spectra"]):
        runs += ctx.unit(("runs", name, spectrum), lambda a=name, b=spectrum: _unit(ctx, a, b))
        model += ctx.unit(("model", name, spectrum), lambda a=name, b=spectrum: _model_rows(ctx, a, b))
    return {"main": summarize(runs, model, p["tie"]), "runs": runs, "model": model}


def _ratio(a: float, b: float) -> float:
    """``a / b`` with overflow kept: inf / finite = inf, finite / inf = 0, inf / inf = nan."""
    if math.isinf(a) and math.isinf(b):
        return math.nan
    return math.inf if math.isinf(a) else a / b


def summarize(runs: list[dict], model: list[dict], tie: float) -> list[dict]:
    """One row per case (schedule, placement, dtype, Gram precision, products, spectrum): both orderings'
    errors as multiples of the standard form's (median, min, max over the matrices), the median of the
    per-matrix ratio ``error(qz) / error(zq)``, the model's ratio, and the verdict: the ordering whose
    error is more than ``tie`` times smaller, else ``"tie"`` (``"overflow"`` when both overflow)."""
    keys = ("schedule", "restarts", "dtype", "gram", "products", "spectrum")
    mod = {(r["schedule"], r["restarts"], r["dtype"], r["gram"], r["spectrum"]): r for r in model}
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in keys), {}).setdefault(r["order"], []).append(r)
    out = []
    for key, by in groups.items():
        zq = sorted(by["zq"], key=lambda r: r["matrix"])
        qz = sorted(by["qz"], key=lambda r: r["matrix"])
        row = dict(zip(keys, key, strict=True))
        row["stored"] = zq[0]["stored"]
        for o, rs in (("zq", zq), ("qz", qz)):
            vals = [r["ratio"] for r in rs]
            row[f"{o}_median"] = float(np.median(vals))
            row[f"{o}_min"], row[f"{o}_max"] = min(vals), max(vals)
        per = [_ratio(b["error"], a["error"]) for a, b in zip(zq, qz, strict=True)]
        order = math.nan if any(math.isnan(v) for v in per) else float(np.median(per))
        row["order_ratio"] = order
        mr = mod.get((key[0], key[1], key[2], key[3], key[5]))
        row["model_ratio"] = mr["model_qz"] / mr["model_zq"] if mr else math.nan
        row["verdict"] = (
            "overflow" if math.isnan(order) else "zq" if order > tie else "qz" if order < 1 / tie else "tie"
        )
        out.append(row)
    return out


def _geomean(vals) -> float:
    vals = [v for v in vals if math.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(vals)))) if vals else math.nan


def _case(rows, **kw) -> dict:
    sel = [r for r in rows if all(str(r[k]) == str(v) for k, v in kw.items())]  # CSV: '2' reads as 2
    if len(sel) != 1:
        raise ValueError(f"expected one case for {kw}, found {len(sel)}")
    return sel[0]


def model_agreement(rows: list[dict]) -> dict:
    """How often the model names the better ordering among decided cases, and the rank correlation of
    the model's ``qz / zq`` with the measured one (finite cases)."""
    from scipy.stats import spearmanr

    decided = [r for r in rows if r["verdict"] in ORDERS and math.isfinite(r["model_ratio"])]
    agree = sum((r["model_ratio"] > 1) == (r["verdict"] == "zq") for r in decided)
    fin = [r for r in rows if math.isfinite(r["order_ratio"]) and math.isfinite(r["model_ratio"])]
    rho = float(spearmanr([r["order_ratio"] for r in fin], [r["model_ratio"] for r in fin]).correlation)
    return {"decided": len(decided), "agree": agree, "spearman": rho}


def numbers(tables) -> dict:
    rows = tables["main"]
    low = [r for r in rows if r["gram"] == "working"]
    wide = [r for r in rows if r["gram"] == "float32"]
    out = {"qorderTie": PARAMS["tie"], "qorderCases": len(low), "qorderWideCases": len(wide)}
    for tag, sel in (("", low), ("Wide", wide)):
        for v, word in (
            ("zq", "ZqBetter"),
            ("qz", "QzBetter"),
            ("tie", "Ties"),
            ("overflow", "BothOverflow"),
        ):
            out[f"qorder{tag}{word}"] = sum(r["verdict"] == v for r in sel)
        out[f"qorder{tag}GeoMean"] = _geomean(r["order_ratio"] for r in sel)
    for dt, word in (("fp16", "FpSixteen"), ("bf16", "Bf")):
        for products, pw in (("full", "Full"), ("symmetric", "Sym")):
            sel = [r for r in low if r["dtype"] == dt and r["products"] == products]
            out[f"qorderGeoMean{word}{pw}"] = _geomean(r["order_ratio"] for r in sel)
    finite = [r for r in low if math.isfinite(r["order_ratio"])]
    hi, lo_ = max(finite, key=lambda r: r["order_ratio"]), min(finite, key=lambda r: r["order_ratio"])
    out["qorderMaxRatio"] = hi["order_ratio"]
    out["qorderMaxCase"] = (
        f"{hi['schedule']} ({hi['restarts']}; {hi['dtype']}, {hi['products']}, {hi['spectrum']})"
    )
    out["qorderMinRatio"] = lo_["order_ratio"]
    out["qorderMinCase"] = (
        f"{lo_['schedule']} ({lo_['restarts']}; {lo_['dtype']}, {lo_['products']}, {lo_['spectrum']})"
    )
    stored = [r for r in low if r["stored"]]
    out["qorderStoredZqWorst"] = max(r["zq_max"] for r in stored)
    out["qorderStoredQzWorst"] = max(r["qz_max"] for r in stored)
    out["qorderStoredZqBetter"] = sum(r["verdict"] == "zq" for r in stored)
    out["qorderStoredQzBetter"] = sum(r["verdict"] == "qz" for r in stored)
    out["qorderStoredCases"] = len(stored)
    if any(r["schedule"] == "polar-express-5" for r in low):  # the two cases
        c = _case(
            low,
            schedule="polar-express-5",
            restarts="2",
            dtype="fp16",
            products="full",
            spectrum="logunif-1e-3",
        )
        out["qorderPeFiveZq"], out["qorderPeFiveQz"] = c["zq_median"], c["qz_median"]
        c = _case(
            low,
            schedule="polar-express-5",
            restarts="2",
            dtype="fp16",
            products="symmetric",
            spectrum="logunif-1e-3",
        )
        out["qorderPeFiveSymZq"], out["qorderPeFiveSymQz"] = c["zq_median"], c["qz_median"]
    if any(r["schedule"] == "nsiter-7step" for r in low):
        c = _case(
            low,
            schedule="nsiter-7step",
            restarts="2,5",
            dtype="bf16",
            products="full",
            spectrum="logunif-1e-3",
        )
        out["qorderSevenZq"], out["qorderSevenQz"] = c["zq_median"], c["qz_median"]
        c = _case(
            low,
            schedule="nsiter-7step",
            restarts="2,5",
            dtype="bf16",
            products="symmetric",
            spectrum="logunif-1e-3",
        )
        out["qorderSevenSymZq"], out["qorderSevenSymQz"] = c["zq_median"], c["qz_median"]
    a = model_agreement(low)
    out["qorderModelDecided"], out["qorderModelAgree"] = a["decided"], a["agree"]
    out["qorderModelSpearman"] = a["spearman"]
    return out


def latex(tables) -> dict:
    """Stored placements, R and Q in the working dtype: each ordering's worst error over the spectra and
    matrices as a multiple of the standard form's."""
    from experiments.tables import latex_table, tex_number

    rows = []
    keyf = lambda r: (r["schedule"], str(r["restarts"]), r["dtype"], r["products"])  # noqa: E731
    sel = sorted((r for r in tables["main"] if r["gram"] == "working" and r["stored"]), key=keyf)
    for key, grp in itertools.groupby(sel, key=keyf):
        grp = list(grp)
        rows.append(
            {
                "schedule": key[0],
                "restarts": str(key[1]),
                "dtype": key[2],
                "products": key[3],
                "zq": max(r["zq_max"] for r in grp),
                "qz": max(r["qz_max"] for r in grp),
                "order": _geomean(r["order_ratio"] for r in grp),
            }
        )

    def num(v):
        return "overflow" if not math.isfinite(v) else f"${tex_number(v, 2)}$"

    cols = [
        ("schedule", "schedule", None),
        ("restarts", "restarts", None),
        ("dtype", "dtype", None),
        ("products", "products", None),
        ("zq", r"worst, $Q \leftarrow c_0 Q + W Q$", num),
        ("qz", r"worst, $Q \leftarrow c_0 Q + Q W$", num),
        ("order", r"$\mathrm{qz}/\mathrm{zq}$ (geo.\ mean)", num),
    ]
    return {"table": latex_table(rows, cols)}


def plot(tables, ctx):
    import matplotlib.pyplot as plt

    from nsiter.plot import use_style

    use_style()
    rows = [r for r in tables["main"] if r["gram"] == "working"]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
    lim = (1e-2, 1e5)
    off = [0, 0]  # points of each panel drawn on an edge: off the scale, an overflow (inf) or undefined (nan)

    def outside(v) -> bool:
        return not (math.isfinite(v) and lim[0] <= v <= lim[1])

    for r in rows:
        off[0] += outside(r["model_ratio"]) or outside(r["order_ratio"])
        off[1] += outside(r["zq_median"]) or outside(r["qz_median"])
    for dt, marker in (("fp16", "o"), ("bf16", "s")):
        for products, fill in (("full", True), ("symmetric", False)):
            sel = [r for r in rows if r["dtype"] == dt and r["products"] == products]
            kw = {"marker": marker, "s": 14, "alpha": 0.7, "label": f"{dt}, {products}"}
            if not fill:
                kw.update(facecolors="none", edgecolors=f"C{0 if dt == 'fp16' else 1}")
            else:
                kw.update(color=f"C{0 if dt == 'fp16' else 1}")
            clip = lambda v: min(max(v, lim[0]), lim[1]) if math.isfinite(v) else lim[1]  # noqa: E731 - nan, inf: top
            ax[0].scatter([clip(r["model_ratio"]) for r in sel], [clip(r["order_ratio"]) for r in sel], **kw)
            ax[1].scatter([clip(r["zq_median"]) for r in sel], [clip(r["qz_median"]) for r in sel], **kw)
    for a in ax:
        a.plot(lim, lim, "k-", lw=0.8)
        a.set(xscale="log", yscale="log", xlim=lim, ylim=lim)
    ax[0].axhline(1, color="k", lw=0.5, ls=":")
    ax[0].axvline(1, color="k", lw=0.5, ls=":")
    ax[0].set_xlabel(r"first-order model, error(qz) / error(zq)")
    ax[0].set_ylabel(r"measured, error(qz) / error(zq)")
    ax[0].set_title("(a) which ordering: model against measurement")
    ax[1].set_xlabel(r"zq: $Q \leftarrow c_0 Q + WQ$, error / standard form's")
    ax[1].set_ylabel(r"qz: $Q \leftarrow c_0 Q + QW$, error / standard form's")
    ax[1].set_title(r"(b) both orderings against the standard form")
    ax[1].legend(fontsize=7, loc="upper left")
    for a, n in zip(ax, off, strict=True):
        a.text(0.98, 0.02, f"{n} of {len(rows)} cases off scale (overflow included),\ndrawn on the edges",
               transform=a.transAxes, ha="right", va="bottom", fontsize=7)  # fmt: skip
    return fig


if __name__ == "__main__":
    from experiments.__main__ import main

    sys.exit(main([NAME, *sys.argv[1:]]))
