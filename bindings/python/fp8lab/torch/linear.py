"""``Fp8Linear``: a drop-in ``torch.nn.Linear`` whose three GEMMs run through fp8lab's quantisers and
GEMM emulator under a training recipe (``fp8lab.torch.recipes``).

Tensors cross into numpy as views (``Tensor.numpy()`` on contiguous float32 CPU tensors, no copy);
the emulator returns float64 arrays whose values are values of the pass's output format, so the
cast back to float32 is exact. The emulated GEMMs are bit-identical for any fp8lab thread count
(``fp8lab.set_num_threads``); torch does no arithmetic inside this layer except the optional bias add.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

import fp8lab

from .recipes import PASSES, recipe as _recipe, resolve


class NonFiniteError(ValueError):
    """A GEMM operand holds NaN or Inf (the emulated GEMMs need finite inputs); the trainer turns it
    into a divergence record with its step."""


def bf16_values(x: np.ndarray) -> np.ndarray:
    """``x`` (float32) rounded to BF16 nearest-even by fp8lab's encoder, as float32 values."""
    bits = fp8lab.encode(x, "bf16")
    return (bits.astype(np.uint32) << 16).view(np.float32)


def quantize_operand(x: np.ndarray, spec: dict, rng=None):
    """The operand a pass feeds ``fp8lab.gemm``: a QTensor for scaled formats, else float32 values.
    ``rng`` (a numpy Generator): round the elements stochastically with random bits drawn from it,
    one word per element in row-major order, below 2^(cvt.rs width of the format)."""
    fmt = spec["fmt"]
    if fmt == "fp32":
        return x
    if fmt == "bf16":
        return bf16_values(x)
    if rng is None:
        return fp8lab.quantize(x, tuple(spec["tile"]), fmt, spec["rule"])
    rbits = rng.integers(0, 1 << fp8lab.microscale.sr_width(fmt, None), size=x.shape, dtype=np.uint32)
    return fp8lab.quantize(x, tuple(spec["tile"]), fmt, spec["rule"], rbits=rbits)


def rht16_k(x: np.ndarray) -> np.ndarray:
    """``x`` [rows, K] times TransformerEngine's size-16 random Hadamard transform along K
    (fp8lab.rht16), K zero-padded to a multiple of 16 first."""
    pad = -x.shape[1] % 16
    if pad:
        x = np.concatenate([x, np.zeros((x.shape[0], pad), np.float32)], axis=1)
    return fp8lab.rht16(np.ascontiguousarray(x, dtype=np.float32))


def run_pass(a: np.ndarray, b: np.ndarray, spec: dict, keep: bool = False, qb=None, rng=None):
    """One pass: quantise A [M, K] and B [N, K] by the pass's operand specs, then ``fp8lab.gemm``
    with the pass's GEMM spec. Returns float32 [M, N] (exact: the values are of the output format),
    and with ``keep`` also both quantised operands. ``qb``: B already quantised by its spec. A pass
    with ``rht16`` transforms both operands first; ``stochastic_rounding`` operands draw their random
    bits from ``rng``, A's before B's (recipes.PASS_STEPS)."""
    if spec.get("rht16"):
        a, b = rht16_k(a), rht16_k(b)
    sr = spec.get("stochastic_rounding", ())
    if sr and rng is None:
        raise ValueError("rng: this pass rounds stochastically and needs a seeded numpy Generator")
    qa = quantize_operand(a, spec["a"], rng if "a" in sr else None)
    if qb is None:
        qb = quantize_operand(b, spec["b"], rng if "b" in sr else None)
    d = fp8lab.gemm(qa, qb, **spec["gemm"]).astype(np.float32)
    return (d, qa, qb) if keep else d


def transposed(q, spec: dict, want: dict):
    """``q`` (a QTensor quantised by ``spec``) as the quantisation of its transpose by ``want``, when
    that is the same thing: same format and rule, and ``want``'s tile is ``spec``'s transposed (a
    tile's amax does not depend on orientation, so scales and bits carry over). Else None. This is
    how Dgrad reuses the Fprop's FP8 weight, as DeepSeek-V3 keeps one FP8 copy per weight."""
    if not hasattr(q, "bits") or want.get("fmt") in ("bf16", "fp32"):
        return None
    if q.global_scale != 1.0 or getattr(q, "global_amax", 0.0) != 0.0:
        return None  # two-level (NVFP4) tensors also carry tensor-level scale and amax: quantised afresh
    if want.get("fmt") != spec.get("fmt") or want.get("rule") != spec.get("rule"):
        return None
    if list(want.get("tile", [])) != list(spec.get("tile", []))[::-1]:
        return None
    return fp8lab.from_parts(np.ascontiguousarray(q.bits.T), np.ascontiguousarray(q.scales.T), want["fmt"],
                             tuple(want["tile"]), want["rule"], allow_nonfinite=True)  # q is fp8lab's own output


def _same_quantisation(cache: dict, op: dict) -> bool:
    return all(cache.get(k) == op.get(k) for k in ("fmt", "tile", "rule"))


def cached_activation(x: np.ndarray, cache: dict, fprop_a=None, fprop_a_spec=None) -> np.ndarray:
    """What the forward keeps of ``x`` for Wgrad: ``x`` itself, or its quantised copy dequantised to
    float32 (nearest-even from the exact float64 value). ``fprop_a`` (the Fprop's quantised x) is
    reused when the cache quantises x the same way."""
    if cache.get("from", "input") == "input":
        return x
    if hasattr(fprop_a, "dequantize") and fprop_a_spec is not None and _same_quantisation(cache, fprop_a_spec):
        q = fprop_a
    else:
        q = fp8lab.quantize(x, tuple(cache["tile"]), cache["fmt"], cache["rule"])
    return q.dequantize().astype(np.float32)


def _first_nonfinite(a: np.ndarray):
    bad = np.argwhere(~np.isfinite(a))
    return tuple(int(i) for i in bad[0]) if len(bad) else None


def _check_finite(a: np.ndarray, layer: str, what: str) -> None:
    if np.isfinite(a).all():
        return
    at = _first_nonfinite(a)
    if at is not None:
        raise NonFiniteError(f"{layer}: {what} holds {a[at]} at {list(at)}; the emulated GEMMs need finite inputs")


def _tile_k(spec: dict):
    fmt = spec["fmt"]
    return None if fmt in ("bf16", "fp32") else spec["tile"][1]


def _scale_block(instruction) -> int:
    """The K elements one block scale covers inside ``instruction`` (a tensor-core preset name or
    alias; ``scale_block`` of ``fp8lab.tensor_cores()``), 0 for instructions without block scales."""
    for t in fp8lab.tensor_cores():
        if instruction in (t["name"], t.get("alias")):
            return int(t.get("scale_block", 0))
    return 0


def check_tiling(row: dict, k: int, pass_name: str, where: str, specs: dict | None = None) -> None:
    """Raise ValueError when the pass's operand tiles cannot be accumulated over K = ``k``:
    a promoted GEMM applies one scale per operand per promotion interval, a tensor-core chain one
    scale per operand for the whole K, a block-scaled instruction (tcgen05 ``block_scale``) one per
    ``scale_block`` elements inside each instruction. ``specs``: the row's resolved passes (``resolve(row)``)."""
    spec = (specs or resolve(row))[pass_name]
    g = spec["gemm"]
    acc = g.get("accumulate", "promoted")
    block = _scale_block(g.get("instruction")) if acc == "tensorcore" else 0
    for side in ("a", "b"):
        tk = _tile_k(spec[side])
        if tk is None or tk == 0 or tk >= k:
            continue
        if block:
            if tk % block != 0:
                raise ValueError(f"{where}: recipe {row['name']!r} cannot tile {pass_name}: operand {side}'s tile "
                                 f"{spec[side]['tile']} holds {tk} elements along K = {k}, which does not divide into "
                                 f"the instruction {g['instruction']}'s scale blocks of {block}")
        elif acc == "promoted":
            pe = g.get("promote_every", 128)
            if tk % pe != 0:
                raise ValueError(f"{where}: recipe {row['name']!r} cannot tile {pass_name}: operand {side}'s tile "
                                 f"{spec[side]['tile']} holds {tk} elements along K = {k}, which does not divide into "
                                 f"promotion intervals of {pe} (a scale must be constant over each interval)")
        elif acc == "tensorcore":
            raise ValueError(f"{where}: recipe {row['name']!r} cannot tile {pass_name}: accumulate='tensorcore' "
                             f"applies one scale per row over the whole K = {k}, but operand {side}'s tile "
                             f"{spec[side]['tile']} has {tk} elements along K")


class _Fn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, layer):
        xn = x.detach().numpy()
        wn = weight.detach().numpy()
        row, name = layer.recipe, layer.fp8lab_name
        _check_finite(xn, name, "fprop input x")
        _check_finite(wn, name, "weight")
        y, qx, qw = layer._pass("fprop", xn, wn, keep=True)
        ctx.qw = qw
        cache = row.get("cache_attn_out") if layer.role == "attn_out" and "cache_attn_out" in row else row["cache"]
        ctx.x_cached = cached_activation(xn, cache, qx, layer.specs["fprop"]["a"])
        ctx.layer = layer
        ctx.save_for_backward(weight)
        if layer.sample_errors:
            layer._record("fprop", y, xn, wn)
        return torch.from_numpy(y)

    @staticmethod
    def backward(ctx, dy):
        (weight,) = ctx.saved_tensors
        layer = ctx.layer
        dyn = dy.detach().to(torch.float32).contiguous().numpy()
        _check_finite(dyn, layer.fp8lab_name, "output gradient dy")
        wt = np.ascontiguousarray(weight.detach().numpy().T)
        passes = layer.specs
        qwt = None if passes["dgrad"].get("rht16") else transposed(ctx.qw, passes["fprop"]["b"], passes["dgrad"]["b"])
        dx = layer._pass("dgrad", dyn, wt, qb=qwt)
        ctx.qw = None
        dyt = np.ascontiguousarray(dyn.T)
        xt = np.ascontiguousarray(ctx.x_cached.T)
        dw = layer._pass("wgrad", dyt, xt)
        if layer.sample_errors:
            layer._record("dgrad", dx, dyn, wt)
            layer._record("wgrad", dw, dyt, np.ascontiguousarray(ctx.layer._last_x.T))
        ctx.x_cached = None
        return torch.from_numpy(dx), torch.from_numpy(dw), None


class Fp8Linear(torch.nn.Module):
    """``y = x @ W.T (+ b)`` with Fprop, Dgrad and Wgrad emulated under ``recipe`` (a name of
    ``fp8lab.torch.recipes()`` or a row dict). Float32 parameters (the FP32 master weights); inputs of
    any leading shape, last dimension ``in_features``. ``role="attn_out"`` marks the Linear after
    attention, whose cached input the DeepSeek rows keep in E5M6 (``cache_attn_out``).

    Raises ValueError when the recipe cannot tile this layer's shapes, ``NonFiniteError`` (a
    ValueError) when an operand holds NaN or Inf."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, recipe="deepseek_fp8",
                 role: str = "", name: str = "Fp8Linear"):
        super().__init__()
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{arg}: expected a positive int, got {v!r}")
        self.in_features, self.out_features = in_features, out_features
        self.recipe = _recipe(recipe)
        self.specs = resolve(self.recipe)  # each pass as {"a", "b", "gemm"}, GEMM rows looked up once
        self.role = role
        self.fp8lab_name = name
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features))
        self.bias = torch.nn.Parameter(torch.zeros(out_features)) if bias else None
        torch.nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Linear's default
        self.sample_errors = False
        self.gemm_errors = {p: [] for p in PASSES}
        self._last_x = None
        self.seed_rounding(0)
        if self.recipe["kind"] == "emulated":
            check_tiling(self.recipe, in_features, "fprop", name, self.specs)
            check_tiling(self.recipe, out_features, "dgrad", name, self.specs)

    @classmethod
    def from_linear(cls, lin: torch.nn.Linear, recipe, role: str = "", name: str = "Fp8Linear") -> "Fp8Linear":
        new = cls(lin.in_features, lin.out_features, bias=lin.bias is not None, recipe=recipe, role=role, name=name)
        with torch.no_grad():
            new.weight.copy_(lin.weight.to(torch.float32))
            if lin.bias is not None:
                new.bias.copy_(lin.bias.to(torch.float32))
        return new

    def seed_rounding(self, seed: int) -> None:
        """Seed the generator of this layer's stochastic-rounding bits: numpy's PCG64 seeded with
        (seed, crc32 of the layer's name), so layers draw different bits and a run is a function of
        its seed. Each backward draws afresh (Dgrad's operands, then Wgrad's)."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
        self.rounding_rng = np.random.default_rng([int(seed), zlib.crc32(self.fp8lab_name.encode())])

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"recipe={self.recipe['name']!r}" + (f", role={self.role!r}" if self.role else ""))

    def _pass(self, pass_name: str, a: np.ndarray, b: np.ndarray, keep: bool = False, qb=None):
        if a.shape[0] == 0 or b.shape[0] == 0 or a.shape[1] == 0:
            d = np.zeros((a.shape[0], b.shape[0]), np.float32)
            return (d, None, None) if keep else d
        try:
            return run_pass(a, b, self.specs[pass_name], keep, qb, self.rounding_rng)
        except NonFiniteError:
            raise
        except (ValueError, TypeError) as err:
            raise type(err)(f"{self.fp8lab_name}: {pass_name} under recipe {self.recipe['name']!r}: {err}") from None

    def _record(self, pass_name: str, d: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        """Normwise relative error of the pass's result against the exact product of its unquantised
        float32 operands (float64 matmul: exact products, one rounding per add at 53 bits)."""
        exact = a.astype(np.float64) @ b.astype(np.float64).T
        den = float(np.linalg.norm(exact))
        if den > 0:
            self.gemm_errors[pass_name].append(float(np.linalg.norm(d.astype(np.float64) - exact)) / den)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{self.fp8lab_name}: input's last dimension is {x.shape[-1]}, expected "
                             f"in_features = {self.in_features}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).to(torch.float32).contiguous()
        if self.recipe["kind"] == "torch":
            y = torch.nn.functional.linear(x2, self.weight)
        else:
            if self.sample_errors:
                self._last_x = x2.detach().numpy().copy()
            y = _Fn.apply(x2, self.weight, self)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


__all__ = ["Fp8Linear", "NonFiniteError", "bf16_values", "cached_activation", "check_tiling", "quantize_operand",
           "rht16_k", "run_pass"]
