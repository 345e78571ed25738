"""The Triton kernels (nsiter.triton_kernels) against float64 references: interpreter on CPU, compiled on CUDA.

On a machine without CUDA the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set per test
before the kernels are built: ``triton.jit`` reads it when it decorates).  The interpreter's ``tl.dot`` returns
garbage on bfloat16 operands (triton 3.6: a 16x16 product off by 2.6e10), so there the bfloat16 data path is
covered by float32 operands holding bfloat16 values with a bfloat16 output; float16 operands run as they are.
With CUDA the same cases run compiled, bfloat16 operands included.  ``test_kernels_compile_for_hopper`` lowers
both kernels to an sm_90 cubin (triton's bundled ptxas), no GPU needed.

Tolerance: the entrywise bound of :func:`nsiter.triton_kernels.error_bound`, ``(k + 2) u_32 (|alpha| |P| |Q| +
|beta| |C|) + u_out |ref|`` for inner dimension ``k`` (``2 u_out`` for bfloat16 under the interpreter, which
rounds float32 to bfloat16 toward zero).
"""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")

from nsiter import triton_kernels as tk  # noqa: E402

CUDA = torch.cuda.is_available()
SIZES = [(1, 1), (7, 9), (33, 40), (65, 17), (130, 70)]
# (operand dtype, values representable in, output dtype); bf16 operands only compiled (see the module docstring)
CASES = [
    (torch.float32, torch.float32, torch.float32),
    (torch.float32, torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.float16, torch.float16),
    (torch.float16, torch.float16, torch.float16),
    (torch.float16, torch.float16, torch.float32),
]
if CUDA:
    CASES += [
        (torch.bfloat16, torch.bfloat16, torch.bfloat16),
        (torch.bfloat16, torch.bfloat16, torch.float32),
    ]
CASE_IDS = [f"{a}-{v}-{o}".replace("torch.", "") for a, v, o in CASES]


@pytest.fixture(autouse=True)
def _mode(monkeypatch):
    """Interpreter unless CUDA: the kernels are built per mode (nsiter.triton_kernels._kernels)."""
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def _device() -> str:
    return "cuda" if CUDA else "cpu"


def _rand(*shape: int, values: torch.dtype, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Gaussian entries rounded to ``values``, stored in ``dtype`` (exact: ``values`` fits in ``dtype``)."""
    T = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(values).to(dtype)
    return T.to(_device())


def _check_bound(out, P, Q, C, alpha, beta, out_dtype):
    """Assert the entrywise bound (nsiter.triton_kernels.error_bound) against the float64 reference."""
    ref, bound = tk.error_bound(P, Q, C, beta=beta, alpha=alpha, out_dtype=out_dtype)
    err = (out.double().cpu() - ref).abs()
    assert out.dtype == out_dtype and out.shape == ref.shape
    assert bool((err <= bound).all()), (
        f"max error {err.max():.3g}, bound there {bound.flatten()[err.argmax()]:.3g}"
    )
    return ref


@pytest.mark.parametrize(("dtype", "values", "out_dtype"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize(("m", "k"), SIZES)
def test_syrk_is_x_xt_within_the_bound_and_exactly_symmetric(m, k, dtype, values, out_dtype):
    X = _rand(3, m, k, values=values, dtype=dtype, seed=m + k)
    S = tk.syrk(X, out_dtype=out_dtype)
    _check_bound(S, X, X.mT, None, 1.0, 0.0, out_dtype)
    assert torch.equal(S, S.mT)  # mirrored, bit for bit


@pytest.mark.parametrize(("dtype", "values", "out_dtype"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("m", [m for m, _ in SIZES])
def test_symmetric_mm_horner_term_within_the_bound_and_exactly_symmetric(m, dtype, values, out_dtype):
    """``B = c_1 A + c_2 A^2`` (Muon's quintic Horner term) with A symmetric, batched, C of the output dtype."""
    A = _rand(2, m, m, values=values, dtype=torch.float64, seed=m)
    A = (A + A.mT).to(values).to(dtype)  # symmetric, its entries in `values`
    C = A.to(out_dtype)
    B = tk.symmetric_mm(A, A, C=C, beta=-4.7750, alpha=2.0315, out_dtype=out_dtype)
    _check_bound(B, A, A, C, 2.0315, -4.7750, out_dtype)
    assert torch.equal(B, B.mT)


@pytest.mark.parametrize(("dtype", "values", "out_dtype"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize(("m", "k"), SIZES)
def test_addmm_step_update_within_the_bound(m, k, dtype, values, out_dtype):
    """``X <- c_0 X + B X``: B (m, m) shared over a batch of X (b, m, k), C = X in the output dtype."""
    B = _rand(m, m, values=values, dtype=dtype, seed=1)
    X = _rand(4, m, k, values=values, dtype=dtype, seed=2)
    C = X.to(out_dtype)
    Y = tk.addmm(B, X, C=C, beta=3.4445, alpha=1.0, out_dtype=out_dtype)
    _check_bound(Y, B.expand(4, m, m), X, C, 1.0, 3.4445, out_dtype)


def test_unbatched_and_out_buffers_are_the_batched_results():
    X = _rand(3, 33, 20, values=torch.float32, dtype=torch.float32, seed=5)
    S = tk.syrk(X)
    out = torch.empty(33, 33, device=_device())
    assert tk.syrk(X[1], out) is out and torch.equal(out, S[1])  # each batch entry its own product
    Y = tk.addmm(X[0], X[1].mT)
    assert torch.equal(Y, tk.addmm(X[0:1], X[1:2].mT)[0])


def test_bad_arguments_are_named():
    X = _rand(8, 8, values=torch.float32, dtype=torch.float32, seed=0)
    with pytest.raises(ValueError, match="float64"):
        tk.syrk(X.double())
    with pytest.raises(ValueError, match="inner dimensions"):
        tk.addmm(X, X[:5])
    with pytest.raises(ValueError, match=r"Q of shape \(\.\.\., k, 8\)"):
        tk.symmetric_mm(X, X[:, :5])
    with pytest.raises(ValueError, match="out must be"):
        tk.syrk(X, torch.empty(8, 8, dtype=torch.float16, device=_device()))
    with pytest.raises(ValueError, match="batch 2, expected 1 or 3"):
        tk.addmm(X.expand(3, 8, 8), X.expand(2, 8, 8))


def test_availability_follows_the_device_and_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert tk.triton_available("cpu") is False
    assert tk.triton_available("cuda") is CUDA
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert tk.triton_available("cpu") is True
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="CUDA tensors"):
        tk.syrk(torch.ones(4, 4))


def _signature(fn, dtype: str, constexprs: dict) -> dict:
    """triton.compile's signature of one of our kernels: tensors, int sizes/strides, float scalars."""
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in ("P", "Q", "C", "Out"):
            sig[name] = f"*{dtype}"
        elif name in ("alpha", "beta"):
            sig[name] = "fp32"
        else:
            sig[name] = "i64" if name.startswith("s") else "i32"
    return sig


@pytest.mark.parametrize(("kernel", "dtype"), [("symmetric", "bf16"), ("general", "fp32")])
def test_kernels_compile_for_hopper(kernel, dtype, monkeypatch):
    """Both kernels lower to an sm_90 cubin (the production path), with the tile sizes used on CUDA."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = tk._kernels(False)[kernel]
    const = {"HAS_C": True, "IEEE": dtype == "fp32", "BM": 128, "BK": 32 if dtype == "fp32" else 64}
    if kernel == "general":
        const["BN"] = 128
    src = ASTSource(fn=fn, signature=_signature(fn, dtype, const), constexprs=const)
    try:
        compiled = triton.compile(
            src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 8, "num_stages": 3}
        )
    except RuntimeError as exc:  # no CUDA backend toolchain in this triton build
        pytest.skip(f"triton cannot compile for sm_90 here: {exc}")
    assert compiled.asm["cubin"]
    if dtype == "bf16":  # tensor-core instructions (wgmma on sm_90); float32 runs IEEE FMAs
        assert "mma" in compiled.asm["ptx"]


def test_the_bound_holds_for_torch_and_rejects_a_wrong_product():
    """The bound admits torch's own float32 product and refuses one whose single entry is off by 1%."""
    X = _rand(33, 40, values=torch.float32, dtype=torch.float32, seed=7).cpu()
    ref, bound = tk.error_bound(X, X.mT, out_dtype=torch.float32)
    assert bool(((X @ X.mT).double() - ref).abs().le(bound).all())
    wrong = (X @ X.mT).double()
    wrong[3, 5] *= 1.01
    assert not bool((wrong - ref).abs().le(bound).all())
