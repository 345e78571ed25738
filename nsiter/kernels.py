"""The evaluator's matrix products, chosen by measurement: native or emulated GEMM, full or symmetric.

**Native or emulated.**  A bfloat16/float16 product can run as the backend's own low-precision GEMM
(*native*) or as a float32 GEMM of the same dtype-valued operands whose result is rounded to the working
dtype (*emulated*).  Both compute the same arithmetic up to summation order: products of dtype-rounded
operands, accumulated in float32, rounded once to the dtype.  Which is faster depends on the machine
and the size, not on the CPU's capability string: on an AVX2-only CPU torch 2.13's bf16 GEMM is a scalar
path about 70x slower than float32, and on an Intel AVX-512 CPU issue 10 measured native bf16 1.7x
slower than emulation.  So :func:`kernel_choice` times a few products both ways the first time a
(device, dtype, size class) is needed and keeps the faster; CUDA is native without a probe, and
float32/float64 are always native.

**Symmetric products.**  ``X X^T`` and the product of two polynomials in the same symmetric matrix
(``R^2``, ``q(R) Q``, ``R q(R)``) are symmetric, so only the blocks on and above the diagonal need
computing: split the rows into ``k`` blocks of ``s`` rows, compute block row ``i`` against the columns
from its diagonal block on (one GEMM per block row, ``2 s (m - i s) n`` flops), then mirror.  That is
``(1 + 1/k) / 2`` of the full product's flops; smaller GEMMs run at a lower rate, so the probe also
decides whether and with which block size it pays (BLAS ``syrk`` does the same for ``X X^T`` but torch
does not expose it).

Decisions are cached per process and, unless ``NSITER_KERNEL_CACHE=off``, in a JSON file
(``$XDG_CACHE_HOME/nsiter/kernels.json``, else ``~/.cache/nsiter/kernels.json``) keyed by the CPU
model, torch version and thread count; ``NSITER_KERNEL_CACHE`` may also name another file.  The file is
written atomically and ignored when unreadable.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nsiter._io import atomic_write
from nsiter.dtypes import dtype_name, torch_dtype

__all__ = [
    "LOW_PRECISION",
    "KernelChoice",
    "Products",
    "cache_path",
    "clear_cache",
    "cpu_model",
    "device_name",
    "gemm_path",
    "kernel_choice",
    "size_class",
    "symmetric_mm",
    "symmetric_product_flops",
]

LOW_PRECISION = ("bfloat16", "float16")
_PROBE_MAX = 512  # native/emulated probes use at most this size (native bf16 can be 70x slower)
_SYM_PROBE_MAX = 1024  # symmetric-product probes at most this size; larger classes reuse its verdict
_SYM_MIN = 128  # below this the row blocks are too small to pay on any backend
_SYM_GAIN = 1.05  # the blocked product must be at least this much faster to be used
_CACHE_VERSION = 3

_memory: dict[str, KernelChoice] = {}


@dataclass(frozen=True)
class KernelChoice:
    """How the products of one (device type, working dtype, size class) run.

    Attributes:
        device: ``"cpu"`` or ``"cuda"``.
        dtype: canonical working dtype name.
        size_class: the small side rounded up to a power of two (:func:`size_class`).
        gemm: ``"native"`` (the dtype's own GEMM) or ``"emulated"`` (float32 GEMM, result rounded).
        symmetric_block: rows per block of the blocked symmetric products, or ``None`` (full products).
        source: ``"probe"``, ``"cache file"``, ``"rule"`` (CUDA, float32/float64, tiny sizes) or
            ``"override"`` (``emulate=``/``symmetric=`` given by the caller).
        native_ms, emulated_ms, full_ms, symmetric_ms: the probe's timings (None when not probed).
        float64_cost: float64 GEMM time over float32 GEMM time (float32 entries only): what a float64
            Gram side costs per flop relative to the float32 X side (:func:`nsiter.gram.choose_method`).
    """

    device: str
    dtype: str
    size_class: int
    gemm: str
    symmetric_block: int | None
    source: str
    native_ms: float | None = None
    emulated_ms: float | None = None
    full_ms: float | None = None
    symmetric_ms: float | None = None
    float64_cost: float | None = None

    @property
    def emulated(self) -> bool:
        return self.gemm == "emulated"

    @property
    def label(self) -> str:
        """A short description for records and tables, e.g. ``"bfloat16 emulated, symmetric/128"``."""
        sym = f"symmetric/{self.symmetric_block}" if self.symmetric_block else "full"
        return f"{self.dtype} {self.gemm}, {sym}"


def size_class(m: int) -> int:
    """The small side ``m`` rounded up to a power of two (at least 16): the key of a kernel decision."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"matrix side must be a positive integer, got {m!r}")
    return max(16, 1 << (m - 1).bit_length())


def device_name(device: torch.device | str = "cpu") -> str:
    """The hardware a result was measured on: GPU name, or CPU model, capability and threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cap = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({cpu_model()}; {cap}; {torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform`` elsewhere): results record where they ran."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return model


def cache_path() -> Path | None:
    """The decision cache file, or ``None`` when ``NSITER_KERNEL_CACHE`` is ``off`` (or ``0``, ``no``)."""
    env = os.environ.get("NSITER_KERNEL_CACHE", "").strip()
    if env.lower() in ("off", "0", "no", "false"):
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nsiter" / "kernels.json"


def _machine_key(device: torch.device) -> str:
    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        hw = f"{cpu_model()}; {torch.backends.cpu.get_cpu_capability()}; {torch.get_num_threads()} threads"
    return f"{device.type}|{hw}|torch {torch.__version__}"


def _read_cache(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or corrupt: measure again
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: Path | None, key: str, choice: KernelChoice) -> None:
    if path is None:
        return
    entries = _read_cache(path)
    entries[key] = asdict(choice)
    with contextlib.suppress(OSError):  # a read-only home is no reason to fail a computation
        atomic_write(
            path, json.dumps({"version": _CACHE_VERSION, "entries": entries}, indent=1), parents=True
        )


def clear_cache(*, file: bool = False) -> None:
    """Forget the decisions made in this process (and delete the cache file with ``file=True``)."""
    _memory.clear()
    path = cache_path()
    if file and path is not None:
        path.unlink(missing_ok=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_ms(fns: dict[str, Any], device: torch.device, repeats: int = 3) -> dict[str, float]:
    """Minimum time of each function over ``repeats`` interleaved rounds, after one warm-up each, in ms."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], 1e3 * (time.perf_counter() - t0))
    return best


def _probe_gemm(device: torch.device, dtype: torch.dtype, size: int) -> tuple[str, float, float]:
    """Time ``size``-square products natively in ``dtype`` and emulated (float32 GEMM + rounding)."""
    gen = torch.Generator().manual_seed(0)
    A32 = torch.randn(size, size, generator=gen).div_(math.sqrt(size)).to(dtype).float().to(device)
    C32 = torch.empty_like(A32)
    scratch = torch.empty(size, size, dtype=dtype, device=device)
    A = A32.to(dtype)
    C = torch.empty_like(A)

    def emulated() -> None:
        torch.mm(A32, A32, out=C32)
        scratch.copy_(C32)
        C32.copy_(scratch)

    def native() -> None:
        torch.mm(A, A, out=C)

    # one native call first: when it is far slower than emulation, do not time it again
    _sync(device)
    t0 = time.perf_counter()
    native()
    _sync(device)
    first = 1e3 * (time.perf_counter() - t0)
    emu = _best_ms({"emulated": emulated}, device)["emulated"]
    if first > 10 * emu:
        return "emulated", first, emu
    t = _best_ms({"native": native, "emulated": emulated}, device)
    return ("native" if t["native"] <= t["emulated"] else "emulated"), t["native"], t["emulated"]


def _probe_symmetric(
    device: torch.device, dtype: torch.dtype, size: int
) -> tuple[int | None, float, float | None]:
    """Time full products against blocked symmetric ones with 2, 4 and 8 row blocks: a square ``A A``
    (the Gram form's and Horner's products) plus an ``X X^T`` with ``X`` of shape ``(size, 2 size)``."""
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(size, size, generator=gen, dtype=torch.float64).div_(math.sqrt(size))
    A = (A + A.mT).to(device, dtype)
    X = torch.randn(size, 2 * size, generator=gen).div_(math.sqrt(size)).to(device, dtype)
    out = torch.empty_like(A)
    blocks = sorted({b for b in (size // 2, size // 4, size // 8) if b >= 32 and b % 32 == 0}, reverse=True)

    def full() -> None:
        torch.mm(A, A, out=out)
        torch.mm(X, X.mT, out=out)

    fns = {"full": full}
    for b in blocks:

        def blocked(b: int = b) -> None:
            symmetric_mm(A, A, out, block=b)
            symmetric_mm(X, X.mT, out, block=b)

        fns[str(b)] = blocked
    t = _best_ms(fns, device, repeats=5)
    full_ms = t.pop("full")
    if not t:
        return None, full_ms, None
    best = min(t, key=t.get)
    return (int(best) if full_ms >= _SYM_GAIN * t[best] else None), full_ms, t[best]


def kernel_choice(
    device: torch.device | str,
    dtype: Any,
    m: int,
    *,
    emulate: bool | None = None,
    symmetric: bool | int | None = None,
) -> KernelChoice:
    """How products with small side ``m`` in working ``dtype`` run on ``device`` (measured once, cached).

    Args:
        device: a torch device or its name.
        dtype: the working dtype (``torch.bfloat16``, ``"bf16"``, ...).
        m: the small side of the iterate (the Gram matrix is ``m x m``).
        emulate: ``None`` decides by measurement; ``True``/``False`` forces the path (``True`` only
            changes bfloat16/float16).
        symmetric: ``None`` decides by measurement; ``False`` uses full products; ``True`` blocked
            symmetric products with the measured (or a default) block size; an int gives the block size.

    Never decided from ``torch.backends.cpu.get_cpu_capability()`` alone.
    """
    device = torch.device(device)
    name = dtype_name(dtype)
    tdt = torch_dtype(name)
    if emulate is not None and not isinstance(emulate, bool):
        raise ValueError(f"emulate must be True, False or None, got {emulate!r}")
    if isinstance(symmetric, bool) or symmetric is None:
        pass
    elif not isinstance(symmetric, int) or symmetric < 1:
        raise ValueError(f"symmetric must be True, False, None or a positive block size, got {symmetric!r}")
    cls = size_class(m)
    key = f"{_machine_key(device)}|{name}|{cls}"
    base = _memory.get(key)
    if base is None:
        path = cache_path()
        stored = _read_cache(path).get(key)
        if isinstance(stored, dict):
            try:
                base = KernelChoice(**{**stored, "source": "cache file"})
            except TypeError:
                base = None
        if base is None:
            base = _measure(device, name, tdt, cls)
            if base.source == "probe":
                _write_cache(path, key, base)
        _memory[key] = base
    choice = base
    if emulate is not None:
        gemm = "emulated" if (emulate and name in LOW_PRECISION) else "native"
        if gemm != choice.gemm:
            choice = _replace(choice, gemm=gemm, source="override")
    if symmetric is not None:
        if symmetric is False:
            block = None
        elif symmetric is True:
            block = choice.symmetric_block or _default_block(m)
        else:
            block = int(symmetric)
        if block != choice.symmetric_block:
            choice = _replace(choice, symmetric_block=block, source="override")
    return choice


def _replace(choice: KernelChoice, **kw: Any) -> KernelChoice:
    return KernelChoice(**{**asdict(choice), **kw})


def _default_block(m: int) -> int:
    return max(32, min(128, size_class(m) // 8))


def _measure(device: torch.device, name: str, tdt: torch.dtype, cls: int) -> KernelChoice:
    gemm, native_ms, emulated_ms, source = "native", None, None, "rule"
    if name in LOW_PRECISION and device.type != "cuda":
        gemm, native_ms, emulated_ms = _probe_gemm(device, tdt, min(cls, _PROBE_MAX))
        source = "probe"
    block, full_ms, sym_ms = None, None, None
    if cls >= _SYM_MIN:
        compute = torch.float32 if gemm == "emulated" else tdt
        block, full_ms, sym_ms = _probe_symmetric(device, compute, min(cls, _SYM_PROBE_MAX))
        if block is not None and cls > _SYM_PROBE_MAX:
            block = block * (cls // _SYM_PROBE_MAX)  # keep the number of row blocks
        source = "probe"
    f64 = None
    if name == "float32":
        f64 = _probe_float64_cost(device, min(cls, _PROBE_MAX))
        source = "probe"
    return KernelChoice(
        device.type, name, cls, gemm, block, source, native_ms, emulated_ms, full_ms, sym_ms, f64
    )


def _probe_float64_cost(device: torch.device, size: int) -> float:
    """float64 over float32 time of a ``size``-square product (AVX2 CPUs: about 2.4, not the 2 of the lanes)."""
    gen = torch.Generator().manual_seed(2)
    A = torch.randn(size, size, generator=gen).to(device)
    B = A.double()
    oa, ob = torch.empty_like(A), torch.empty_like(B)
    t = _best_ms({"32": lambda: torch.mm(A, A, out=oa), "64": lambda: torch.mm(B, B, out=ob)}, device)
    return t["64"] / max(t["32"], 1e-6)


def gemm_path(
    device: torch.device | str, dtype: Any, shape: tuple[int, ...], *, emulate: bool | None = None
) -> str:
    """``"native"`` or ``"emulated"``: the GEMM path ``orthogonalize`` uses for an input of ``shape``.

    ``shape`` is ``(..., m, n)``; the decision depends on the small side.  Records, the benchmark and the
    experiments store it next to their numbers.
    """
    if len(shape) < 2:
        raise ValueError(f"expected a shape (..., m, n), got {tuple(shape)}")
    return kernel_choice(device, dtype, min(shape[-2:]), emulate=emulate).gemm


def symmetric_product_flops(m: int, k: int, block: int | None) -> int:
    """Flops of an ``m x m`` product with inner dimension ``k``: ``2 m^2 k`` in full, or with row blocks
    of ``block`` rows only the blocks on and above the diagonal, ``sum_i 2 s_i (m - i block) k``."""
    if block is None or block >= m:
        return 2 * m * m * k
    return sum(2 * min(block, m - i) * (m - i) * k for i in range(0, m, block))


def _mm_out(P: torch.Tensor, Q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = P Q`` by ``mm``/``bmm``: ``torch.matmul(..., out=)`` costs milliseconds of overhead per call on
    small CPU matrices (measured 13 ms against 5 us for ``mm`` on 16x32, torch 2.13)."""
    return torch.mm(P, Q, out=out) if out.ndim == 2 else torch.bmm(P, Q, out=out)


def symmetric_mm(
    P: torch.Tensor,
    Q: torch.Tensor,
    out: torch.Tensor,
    *,
    block: int,
    C: torch.Tensor | None = None,
    beta: float = 0.0,
    alpha: float = 1.0,
) -> torch.Tensor:
    """``out = beta C + alpha P Q`` for a product known to be symmetric (``Q = P^T``, or ``P``, ``Q``
    commuting symmetric), computing the row blocks on and above the diagonal and mirroring the rest.

    ``out`` must not alias ``P``, ``Q`` or ``C``; all are ``(m, m)`` or ``(b, m, m)`` except ``P`` (m, k)
    and ``Q`` (k, m).  The diagonal blocks are computed whole (symmetric up to rounding).
    """
    m = out.shape[-1]
    for i in range(0, m, block):
        rows = slice(i, i + block)
        o = out[..., rows, i:]
        if C is None:
            _mm_out(P[..., rows, :], Q[..., :, i:], o)
            if alpha != 1.0:
                o.mul_(alpha)
        elif out.ndim == 2:
            torch.addmm(C[rows, i:], P[rows, :], Q[:, i:], beta=beta, alpha=alpha, out=o)
        else:
            torch.baddbmm(C[..., rows, i:], P[..., rows, :], Q[..., :, i:], beta=beta, alpha=alpha, out=o)
    for i in range(0, m - block, block):
        out[..., i + block :, i : i + block].copy_(out[..., i : i + block, i + block :].mT)
    return out


class Products:
    """The products of one evaluation: GEMMs in the compute dtype, results rounded as the path requires.

    Two sides: the *X side* (``X X^T``, Horner products of the standard step, ``B X``, ``Q X``) computes
    in ``dtype`` natively, or in float32 with every result rounded to ``dtype`` when emulated; the *Gram
    side* (``R``, ``q(R)``, ``Q`` of the Gram form) computes in ``gram_dtype``, the same as the X side
    unless the caller keeps it wider (``nsiter.gram``).  Rounding is in place through a reused buffer.
    """

    def __init__(self, choice: KernelChoice, dtype: Any, device: torch.device, gram_dtype: Any = None):
        self.choice = choice
        self.dtype = torch_dtype(dtype)
        self.device = device
        emulated = choice.emulated and dtype_name(dtype) in LOW_PRECISION
        self.compute = torch.float32 if emulated else self.dtype
        self.round_to = self.dtype if emulated else None
        g = self.dtype if gram_dtype is None else torch_dtype(gram_dtype)
        self.gram_dtype = g
        if torch.finfo(g).bits >= torch.finfo(self.compute).bits:
            self.gram_compute, self.gram_round = g, None
        else:  # narrower than the compute dtype: compute wide, round (emulation of a low-precision side)
            self.gram_compute, self.gram_round = self.compute, g
        self.block = choice.symmetric_block
        self._scratch: dict[torch.dtype, torch.Tensor] = {}

    def round_(self, T: torch.Tensor, to: torch.dtype | None) -> torch.Tensor:
        """Round ``T`` (contiguous) in place to ``to`` (no-op for ``None``)."""
        if to is None:
            return T
        buf = self._scratch.get(to)
        if buf is None or buf.numel() < T.numel():
            buf = self._scratch[to] = torch.empty(T.numel(), dtype=to, device=T.device)
        s = buf[: T.numel()].view(T.shape)
        s.copy_(T)
        return T.copy_(s)

    def rx(self, T: torch.Tensor) -> torch.Tensor:
        """Round an X-side result."""
        return self.round_(T, self.round_to)

    def rg(self, T: torch.Tensor) -> torch.Tensor:
        """Round a Gram-side result."""
        return self.round_(T, self.gram_round)

    def mm(
        self,
        P: torch.Tensor,
        Q: torch.Tensor,
        out: torch.Tensor,
        C: torch.Tensor | None = None,
        beta=0.0,
        alpha=1.0,
    ) -> torch.Tensor:
        """``out = beta C + alpha P Q`` in one GEMM (addmm / baddbmm), not rounded."""
        if C is None:
            _mm_out(P, Q, out)
            return out.mul_(alpha) if alpha != 1.0 else out
        if out.ndim == 2:
            return torch.addmm(C, P, Q, beta=beta, alpha=alpha, out=out)
        return torch.baddbmm(C, P, Q, beta=beta, alpha=alpha, out=out)

    def sym(
        self,
        P: torch.Tensor,
        Q: torch.Tensor,
        out: torch.Tensor,
        C: torch.Tensor | None = None,
        beta=0.0,
        alpha=1.0,
    ) -> torch.Tensor:
        """``out = beta C + alpha P Q`` for a symmetric result: blocked when the choice says it pays."""
        if self.block is None or self.block >= out.shape[-1]:
            return self.mm(P, Q, out, C, beta, alpha)
        return symmetric_mm(P, Q, out, block=self.block, C=C, beta=beta, alpha=alpha)
