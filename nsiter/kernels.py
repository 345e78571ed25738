"""The evaluator's matrix products, chosen by measurement: native or emulated GEMM, full or symmetric.

**Native or emulated.**  A bfloat16/float16 product can run as the backend's own low-precision GEMM
(*native*) or as a float32 GEMM of the same dtype-valued operands whose result is rounded to the working
dtype (*emulated*).  Both compute the same arithmetic up to summation order: products of dtype-rounded
operands, accumulated in float32, rounded once to the dtype.  Which is faster depends on the machine
and the size, not on the CPU's capability string: on an AVX2-only CPU torch 2.13's bf16 GEMM is a scalar
path about 70x slower than float32, on one Intel AVX-512 Xeon native bf16 measured 1.7x
slower than emulation, and on an Intel Xeon with AMX native bf16 is 2.5-4x faster.  So :func:`kernel_choice` times a few products both ways the first time a
(device, dtype, size class) is needed and keeps the faster; CUDA is native without a probe, and
float32/float64 are always native.

**Symmetric products.**  ``X X^T`` and the product of two polynomials in the same symmetric matrix
(``R^2``, ``q(R) Q``, ``R q(R)``) are symmetric, so only the blocks on and above the diagonal need
computing: split the rows into ``k`` blocks of ``s`` rows, compute block row ``i`` against the columns
from its diagonal block on (one GEMM per block row, ``2 s (m - i s) n`` flops), then mirror.  That is
``(1 + 1/k) / 2`` of the full product's flops; smaller GEMMs run at a lower rate, so the probe also
decides whether and with which block size it pays (BLAS ``syrk`` does the same for ``X X^T`` but torch
does not expose it).

**Noise.**  A probe taken on a loaded machine must not pin a slow path: every comparison is the median
and the minimum of interleaved rounds after a warm-up (noise only adds time: the minimum bounds a kernel's
own cost, the median says what is typical), and a path wins only where both agree; a call within
:data:`CLOSE` (15%) is measured again with more rounds, and a call still that close goes to the emulated
path, which computes the same arithmetic and is
never far slower (while a native low-precision GEMM can be 70-600x slower: torch 2.13's scalar paths).
A dtype whose native GEMM runs at under a quarter of the emulated rate at a *decisive* size
(:data:`DECISIVE_SIZE`, 256: where a scalar fp16 GEMM is 30x slower and noise cannot reverse the
verdict) is never run natively on that device, whatever a smaller probe says: on an AMD EPYC without
avx512_fp16 native fp16 runs at 0.5 GFLOP/s against 81 emulated.  Each entry records the probe sizes,
rounds and medians, so :func:`verify_cache` (``nsiter tune --verify``) can measure it again.

**Tuning off.**  With ``NSITER_TUNE=off`` nothing is measured and no cache is read: the rule table
:func:`rule_choice` decides (CPU: bf16/fp16 emulated; CUDA native; blocked symmetric products with 4 row
blocks from size class 512 up), the same on every machine.  The test suite runs with it.

Decisions are cached per process and, unless ``NSITER_KERNEL_CACHE=off``, in a JSON file
(``$XDG_CACHE_HOME/nsiter/kernels.json``, else ``~/.cache/nsiter/kernels.json``) keyed by the CPU
model, torch version and thread count; ``NSITER_KERNEL_CACHE`` may also name another file (``~``
expanded).  The file is written atomically (:func:`nsiter._io.atomic_write`) and ignored when unreadable;
every entry is validated (:func:`check_entry`) before use, and an invalid one is reported by a
``RuntimeWarning``, measured again and replaced.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nsiter._io import atomic_write
from nsiter.checks import short_repr
from nsiter.dtypes import dtype_name, torch_dtype

__all__ = [
    "CLOSE",
    "DECISIVE_SIZE",
    "LOW_PRECISION",
    "KernelChoice",
    "Products",
    "cache_path",
    "check_entry",
    "clear_cache",
    "compare_timings",
    "cpu_model",
    "device_name",
    "gemm_path",
    "kernel_choice",
    "machine_key",
    "rule_choice",
    "size_class",
    "symmetric_mm",
    "tuning_enabled",
    "verify_cache",
]

LOW_PRECISION = ("bfloat16", "float16")
_PROBE_MAX = 512  # native/emulated probes use at most this size (native bf16 can be 70x slower)
_SYM_PROBE_MAX = 1024  # symmetric-product probes at most this size; larger classes reuse its verdict
_SYM_MIN = 128  # below this the row blocks are too small to pay on any backend
_SYM_GAIN = 1.05  # the blocked product must be at least this much faster to be used
_SYM_RULE_MIN = 512  # the rule table's blocked symmetric products start at this size class
CLOSE = 0.15  # timings within this fraction of each other are measured again; still close: emulated
DECISIVE_SIZE = 256  # native below a quarter of the emulated rate here: never native on this device
_SCALAR_RATIO = 4.0
_ROUNDS, _RECHECK_ROUNDS = 5, 9
_CACHE_VERSION = 5
_GEMMS = ("native", "emulated")
_SOURCES = ("probe", "rule", "cache file", "override")

_memory: dict[str, KernelChoice] = {}
_decisive: dict[tuple[str, str], float] = {}  # (machine key, dtype) -> native / emulated time at 256


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
        native_ms, emulated_ms, full_ms, symmetric_ms: the probe's medians (None when not probed).
        float64_cost: float64 GEMM time over float32 GEMM time (float32 entries only): what a float64
            Gram side costs per flop relative to the float32 X side (:mod:`nsiter.plan`).
        probe_size: side of the square products the GEMM probe timed (None when not probed).
        rounds: interleaved rounds behind the GEMM medians (more when a close call was measured again).
        decisive_ratio: native over emulated time at :data:`DECISIVE_SIZE` (low precision, probed only).
        triton: symmetric products by :func:`nsiter.triton_kernels.symmetric_mm` (CUDA only, where the probe
            measured it faster than torch's products by :data:`_SYM_GAIN`).
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
    probe_size: int | None = None
    rounds: int | None = None
    decisive_ratio: float | None = None
    triton: bool = False

    @property
    def emulated(self) -> bool:
        return self.gemm == "emulated"

    @property
    def label(self) -> str:
        """A short description for records and tables, e.g. ``"bfloat16 emulated, symmetric/128"``."""
        sym = f"symmetric/{self.symmetric_block}" if self.symmetric_block else "full"
        return f"{self.dtype} {self.gemm}, {sym}" + (", triton" if self.triton else "")


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
        path = os.path.expanduser(env)
        if path.startswith("~"):  # "~nosuchuser/k.json" stays as is and would create a folder "./~nosuchuser"
            raise ValueError(f"NSITER_KERNEL_CACHE={env[:200]!r}: cannot expand {path.split(os.sep)[0]!r}")
        return Path(path)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nsiter" / "kernels.json"


def machine_key(device: torch.device | str) -> str:
    """What a measured decision is valid for: device kind, CPU model or GPU name, capability, threads, torch."""
    device = torch.device(device)
    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        hw = f"{cpu_model()}; {torch.backends.cpu.get_cpu_capability()}; {torch.get_num_threads()} threads"
    return f"{device.type}|{hw}|torch {torch.__version__}"


def tuning_enabled() -> bool:
    """False when ``NSITER_TUNE`` is ``off`` (or ``0``, ``no``, ``false``): decisions come from
    :func:`rule_choice`, nothing is measured and no cache file is read or written."""
    return os.environ.get("NSITER_TUNE", "").strip().lower() not in ("off", "0", "no", "false")


def _read_cache(path: Path | None) -> dict[str, Any]:
    try:
        if path is None or not path.is_file():  # a FIFO or device would block or never end: never read
            return {}
    except OSError:  # a name too long, a loop of links: no cache to read
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
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
    try:
        atomic_write(
            path, json.dumps({"version": _CACHE_VERSION, "entries": entries}, indent=1), parents=True
        )
    except OSError as err:  # a read-only home or a full disk is no reason to fail a computation: say so
        warnings.warn(
            f"kernel decision not stored in {short_repr(str(path))} ({err.strerror or err}); it holds for this "
            "process",
            RuntimeWarning,
            stacklevel=3,
        )


def _is_time(v: Any) -> bool:
    return v is None or (
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    )


def check_entry(key: str, entry: Any) -> KernelChoice:
    """The :class:`KernelChoice` a cache-file entry stores under ``key``, or ``ValueError`` naming what is
    wrong: the fields of a ``KernelChoice`` and no others; ``gemm`` native or emulated (emulated only for
    bf16/fp16); ``symmetric_block`` None or a multiple of 32 below the size class; timings finite and
    non-negative or None; device, dtype and size class those of the key (``"...|dtype|size class"``)."""
    fields = {f for f in KernelChoice.__dataclass_fields__}
    if not isinstance(entry, dict):
        raise ValueError(f"entry must be an object, got {type(entry).__name__}")
    if set(entry) != fields:
        bad = sorted(set(entry) ^ fields)
        raise ValueError(f"entry fields differ from KernelChoice's: {', '.join(map(str, bad))}")
    device, *_, dtype, cls = key.split("|")
    if entry["device"] != device or entry["dtype"] != dtype or str(entry["size_class"]) != cls:
        raise ValueError(
            f"entry is for {entry['device']!r}, {entry['dtype']!r}, {entry['size_class']!r}, key for "
            f"{device!r}, {dtype!r}, {cls!r}"
        )
    c = entry["size_class"]
    if isinstance(c, bool) or not isinstance(c, int) or c < 16 or c & (c - 1):
        raise ValueError(f"size_class must be a power of two >= 16, got {c!r}")
    if entry["gemm"] not in _GEMMS or (entry["gemm"] == "emulated" and dtype not in LOW_PRECISION):
        raise ValueError(f"gemm must be 'native' or 'emulated' (emulated: bf16/fp16), got {entry['gemm']!r}")
    b = entry["symmetric_block"]
    if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 32 or b % 32 or b >= c):
        raise ValueError(f"symmetric_block must be None or a multiple of 32 below {c}, got {b!r}")
    if entry["source"] not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {entry['source']!r}")
    for name in ("native_ms", "emulated_ms", "full_ms", "symmetric_ms", "float64_cost", "decisive_ratio"):
        if not _is_time(entry[name]):
            raise ValueError(f"{name} must be a finite non-negative number or null, got {entry[name]!r}")
    for name in ("probe_size", "rounds"):
        v = entry[name]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer or null, got {v!r}")
    if not isinstance(entry["triton"], bool) or (entry["triton"] and device != "cuda"):
        raise ValueError(f"triton must be true or false (true on CUDA only), got {entry['triton']!r}")
    return KernelChoice(**entry)


def _cached(path: Path | None, key: str) -> KernelChoice | None:
    """The valid cache-file entry for ``key``; an invalid one warns and counts as absent."""
    entries = _read_cache(path)
    if key not in entries:
        return None
    try:
        return _replace(check_entry(key, entries[key]), source="cache file")
    except (ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"ignoring the invalid kernel cache entry {key!r} in {path} ({exc}); measuring again",
            RuntimeWarning,
            stacklevel=4,
        )
        return None


def clear_cache(*, file: bool = False) -> None:
    """Forget the decisions made in this process (and delete the cache file with ``file=True``)."""
    _memory.clear()
    _decisive.clear()
    path = cache_path()
    if file and path is not None:
        path.unlink(missing_ok=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fns: dict[str, Any], device: torch.device, rounds: int) -> dict[str, list[float]]:
    """Times in ms of each function over ``rounds`` interleaved rounds, after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(1e3 * (time.perf_counter() - t0))
    return times


def _compare(fns: dict[str, Any], device: torch.device) -> tuple[dict[str, float], dict[str, float], int]:
    """Median and minimum time of each function over :data:`_ROUNDS` interleaved rounds; when the two
    fastest are within :data:`CLOSE` by either statistic, :data:`_RECHECK_ROUNDS` more rounds are taken
    and both are over all.  Returns (medians, minima, rounds).

    Noise (other processes) only adds time, so the minimum is the tightest bound on a kernel's own cost
    and the median its typical cost; a decision stands only where both agree (:func:`_faster`)."""
    times = _median_ms(fns, device, _ROUNDS)

    def close(stat: dict[str, float]) -> bool:
        a, b = sorted(stat.values())[:2]
        return b <= (1 + CLOSE) * a

    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    if len(med) > 1 and (close(med) or close(low)):
        for k, v in _median_ms(fns, device, _RECHECK_ROUNDS).items():
            times[k] += v
        med = {k: statistics.median(v) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}
    return med, low, len(next(iter(times.values())))


def compare_timings(
    fns: dict[str, Any], device: torch.device | str
) -> tuple[dict[str, float], dict[str, float], int]:
    """Median and minimum ms of each function (interleaved rounds after a warm-up; close calls measured again):
    the noise-robust comparison every measured decision uses (the kernel probe, :mod:`nsiter.plan`)."""
    return _compare(fns, torch.device(device))


def _faster(a: str, b: str, med: dict[str, float], low: dict[str, float], gain: float) -> bool:
    """Is ``a`` faster than ``b`` by the factor ``gain``, by the median and by the minimum alike?"""
    return med[a] * gain <= med[b] and low[a] * gain <= low[b]


def _gemm_pair(device: torch.device, dtype: torch.dtype, size: int) -> dict[str, Any]:
    """A ``size``-square product natively in ``dtype`` and emulated (float32 GEMM + rounding)."""
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

    return {"native": native, "emulated": emulated}


def _once_ms(fn: Any, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return 1e3 * (time.perf_counter() - t0)


def _scalar_ratio(device: torch.device, dtype: torch.dtype) -> float:
    """Native over emulated time of one :data:`DECISIVE_SIZE`-square product, by the minima (noise only
    adds time: a scalar GEMM's minimum never drops below its own cost, 67 ms for fp16 here).

    The first native call is a warm-up and is not timed: it pays the backend's one-time set-up (oneDNN
    builds an AMX bf16 kernel on its first call: 1.3 ms against 0.05 ms for the next ones at 256 on an Intel
    Xeon with AMX, ``benchmarks/plan_gate.py``; one untimed emulated call does not show it).  One timed native
    call then suffices when it is already :data:`_SCALAR_RATIO` times the fastest of 3 emulated ones; otherwise both are compared as
    in :func:`_compare`."""
    fns = _gemm_pair(device, dtype, DECISIVE_SIZE)
    fns["emulated"]()
    emu = min(_once_ms(fns["emulated"], device) for _ in range(3))
    fns["native"]()
    first = _once_ms(fns["native"], device)
    if first > _SCALAR_RATIO * emu:
        return first / max(emu, 1e-6)
    _, low, _ = _compare(fns, device)
    return low["native"] / max(low["emulated"], 1e-6)


def _probe_gemm(
    device: torch.device, dtype: torch.dtype, size: int, ratio: float
) -> tuple[str, float | None, float, int]:
    """Native or emulated for ``size``-square products, given the decisive ``ratio`` of the dtype:
    (choice, native median ms or None when not timed, emulated median ms, rounds).  Native only when the
    dtype is not scalar (``ratio < 4``) and native beats emulation at ``size`` by more than :data:`CLOSE`,
    by the median and the minimum alike."""
    fns = _gemm_pair(device, dtype, size)
    if ratio >= _SCALAR_RATIO:  # time emulation only: native would cost seconds to confirm a known loss
        med, _, rounds = _compare({"emulated": fns["emulated"]}, device)
        return "emulated", None, med["emulated"], rounds
    med, low, rounds = _compare(fns, device)
    native = _faster("native", "emulated", med, low, 1 + CLOSE)
    return ("native" if native else "emulated"), med["native"], med["emulated"], rounds


def _symmetric_operands(
    device: torch.device, dtype: torch.dtype, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric-product probes' operands (seeded): a symmetric ``A`` (``size`` square) and an ``X`` of shape
    ``(size, 2 size)``, entries of order ``1 / sqrt(size)``."""
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(size, size, generator=gen, dtype=torch.float64).div_(math.sqrt(size))
    X = torch.randn(size, 2 * size, generator=gen).div_(math.sqrt(size)).to(device, dtype)
    return (A + A.mT).to(device, dtype), X


def _probe_symmetric(
    device: torch.device, dtype: torch.dtype, size: int
) -> tuple[int | None, float, float | None]:
    """Time full products against blocked symmetric ones with 2, 4 and 8 row blocks: a square ``A A``
    (the Gram form's and Horner's products) plus an ``X X^T`` with ``X`` of shape ``(size, 2 size)``."""
    A, X = _symmetric_operands(device, dtype, size)
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
    t, low, _ = _compare(fns, device)
    if len(t) == 1:
        return None, t["full"], None
    best = min((k for k in t if k != "full"), key=t.get)
    return (int(best) if _faster(best, "full", t, low, _SYM_GAIN) else None), t["full"], t[best]


def _probe_triton(device: torch.device, dtype: torch.dtype, size: int, block: int | None) -> bool:
    """Are the Triton symmetric products (:func:`nsiter.triton_kernels.symmetric_mm`) faster than torch's
    (full, or blocked with ``block``) on ``A A`` and ``X X^T`` of ``size`` rows, by :data:`_SYM_GAIN`, by the
    median and the minimum alike?  False where triton is not installed."""
    from nsiter.triton_kernels import symmetric_mm as triton_symmetric
    from nsiter.triton_kernels import triton_available

    if not triton_available(device):
        return False
    A, X = _symmetric_operands(device, dtype, size)
    out = torch.empty_like(A)

    def torch_products() -> None:
        for P, Q in ((A, A), (X, X.mT)):
            if block is None:
                torch.mm(P, Q, out=out)
            else:
                symmetric_mm(P, Q, out, block=block)

    def triton_products() -> None:
        triton_symmetric(A, A, out)
        triton_symmetric(X, X.mT, out)

    med, low, _ = _compare({"torch": torch_products, "triton": triton_products}, device)
    return _faster("triton", "torch", med, low, _SYM_GAIN)


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
    if not tuning_enabled():
        base = rule_choice(device, name, cls)
    else:
        key = _key(device, name, cls)
        base = _memory.get(key)
        if base is None:
            path = cache_path()
            base = _cached(path, key)
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


def _key(device: torch.device, name: str, cls: int) -> str:
    return f"{machine_key(device)}|{name}|{cls}"


def rule_choice(device: torch.device | str, dtype: Any, cls: int) -> KernelChoice:
    """The deterministic rule table that serves when tuning is off (``NSITER_TUNE=off``).

    - bf16/fp16 on a CPU: emulated (the same arithmetic as a native GEMM; never the 70-600x slower
      scalar native paths of some CPUs, at worst the 3.8x that native bf16 gains on AVX-512 bf16);
      on CUDA, and for float32/float64: native.
    - blocked symmetric products with 4 row blocks (``cls // 4`` rows) from size class 512 up: 5/8 of the
      full flops in blocks of at least 128 rows; full products below.
    """
    device = torch.device(device)
    name = dtype_name(dtype)
    gemm = "emulated" if name in LOW_PRECISION and device.type != "cuda" else "native"
    block = cls // 4 if cls >= _SYM_RULE_MIN else None
    return KernelChoice(device.type, name, cls, gemm, block, "rule")


def verify_cache() -> list[dict[str, Any]]:
    """Measure every entry of this machine in the cache file again: one row per entry with the stored
    and the new decision (``gemm``, ``symmetric_block``) and whether they agree.  Entries that differ
    are replaced by the new measurement (``nsiter tune --verify``)."""
    path = cache_path()
    machines = {machine_key(torch.device("cpu")): torch.device("cpu")}
    if torch.cuda.is_available():
        machines[machine_key(torch.device("cuda"))] = torch.device("cuda")
    rows = []
    for key in sorted(_read_cache(path), key=lambda k: (k.rsplit("|", 2)[1], k.rsplit("|", 2)[2].zfill(8))):
        machine, name, cls = key.rsplit("|", 2)
        if machine not in machines or not cls.isdigit() or name not in (*LOW_PRECISION, "float32", "float64"):
            continue  # another machine's entry (or a key no decision is made under): not ours to measure
        stored = _cached(path, key)
        new = _measure(machines[machine], name, torch_dtype(name), int(cls))
        same = stored is not None and (stored.gemm, stored.symmetric_block) == (new.gemm, new.symmetric_block)
        rows.append(
            {
                "dtype": name,
                "size_class": int(cls),
                "stored": stored.label if stored is not None else "invalid",
                "measured": new.label,
                "agree": same,
            }
        )
        if not same:
            _write_cache(path, key, new)
        _memory[key] = new
    return rows


def _replace(choice: KernelChoice, **kw: Any) -> KernelChoice:
    return KernelChoice(**{**asdict(choice), **kw})


def _default_block(m: int) -> int:
    return max(32, min(128, size_class(m) // 8))


def _measure(device: torch.device, name: str, tdt: torch.dtype, cls: int) -> KernelChoice:
    gemm, native_ms, emulated_ms, source = "native", None, None, "rule"
    probe_size = rounds = ratio = None
    if name in LOW_PRECISION and device.type != "cuda":
        dkey = (machine_key(device), name)
        if dkey not in _decisive:
            _decisive[dkey] = _scalar_ratio(device, tdt)
        ratio = _decisive[dkey]
        probe_size = min(cls, _PROBE_MAX)
        gemm, native_ms, emulated_ms, rounds = _probe_gemm(device, tdt, probe_size, ratio)
        source = "probe"
    block, full_ms, sym_ms = None, None, None
    if cls >= _SYM_MIN:
        compute = torch.float32 if gemm == "emulated" else tdt
        block, full_ms, sym_ms = _probe_symmetric(device, compute, min(cls, _SYM_PROBE_MAX))
        if block is not None and cls > _SYM_PROBE_MAX:
            block = block * (cls // _SYM_PROBE_MAX)  # keep the number of row blocks
        source = "probe"
    triton = False
    if device.type == "cuda" and cls >= _SYM_MIN and gemm == "native":
        triton = _probe_triton(device, tdt, min(cls, _SYM_PROBE_MAX), block)
    f64 = None
    if name == "float32":
        f64 = _probe_float64_cost(device, min(cls, _PROBE_MAX))
        source = "probe"
    return KernelChoice(
        device.type,
        name,
        cls,
        gemm,
        block,
        source,
        native_ms,
        emulated_ms,
        full_ms,
        sym_ms,
        f64,
        probe_size,
        rounds,
        ratio,
        triton,
    )


def _probe_float64_cost(device: torch.device, size: int) -> float:
    """float64 over float32 time of a ``size``-square product (AVX2 CPUs: about 2.4, not the 2 of the lanes)."""
    gen = torch.Generator().manual_seed(2)
    A = torch.randn(size, size, generator=gen).to(device)
    B = A.double()
    oa, ob = torch.empty_like(A), torch.empty_like(B)
    _, low, _ = _compare({"32": lambda: torch.mm(A, A, out=oa), "64": lambda: torch.mm(B, B, out=ob)}, device)
    return low["64"] / max(low["32"], 1e-6)


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

    def round_in_place(self, T: torch.Tensor, to: torch.dtype | None) -> torch.Tensor:
        """Round ``T`` (contiguous) in place to ``to`` (no-op for ``None``)."""
        if to is None:
            return T
        buf = self._scratch.get(to)
        if buf is None or buf.numel() < T.numel():
            buf = self._scratch[to] = torch.empty(T.numel(), dtype=to, device=T.device)
        s = buf[: T.numel()].view(T.shape)
        s.copy_(T)
        return T.copy_(s)

    def round_x(self, T: torch.Tensor) -> torch.Tensor:
        """Round an X-side result."""
        return self.round_in_place(T, self.round_to)

    def round_gram(self, T: torch.Tensor) -> torch.Tensor:
        """Round a Gram-side result."""
        return self.round_in_place(T, self.gram_round)

    def fused_product(
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

    def symmetric_product(
        self,
        P: torch.Tensor,
        Q: torch.Tensor,
        out: torch.Tensor,
        C: torch.Tensor | None = None,
        beta=0.0,
        alpha=1.0,
    ) -> torch.Tensor:
        """``out = beta C + alpha P Q`` for a symmetric result: the Triton kernel or blocked products when the
        choice says they pay, else one GEMM."""
        if self.choice.triton and out.is_cuda:
            from nsiter.triton_kernels import symmetric_mm as triton_symmetric

            return triton_symmetric(P, Q, out, C=C, beta=beta, alpha=alpha)
        if self.block is None or self.block >= out.shape[-1]:
            return self.fused_product(P, Q, out, C, beta, alpha)
        return symmetric_mm(P, Q, out, block=self.block, C=C, beta=beta, alpha=alpha)
