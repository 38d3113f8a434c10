"""fp8lab.triton: the project's Triton kernels run on Triton's CPU interpreter with fp8lab's
semantics swapped in, bit-identical to fp8lab's emulator under the audited spec. Each test also
runs the stock interpreter on the same inputs and counts its differences, so what the swap buys is
visible (printed; asserted non-zero where the stock numerics are known to be wrong)."""
from __future__ import annotations

import numpy as np
import pytest

import fp8lab
from triton_support import contract, need_triton

need_triton()
torch = pytest.importorskip("torch")
ft = pytest.importorskip("fp8lab.triton")
tl = pytest.importorskip("triton.language")
triton = pytest.importorskip("triton")
from fp8lab.triton.kernels import act_quant as aq, fp8_gemm as fg, router as rt  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION")


def _report(what, faithful_diffs, stock_diffs, total):
    print(f"\n{what}: faithful {faithful_diffs}/{total} differ from fp8lab, stock interpreter {stock_diffs}/{total}")


def _quant_inputs():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 256)) * np.ldexp(1.0, rng.integers(-12, 12, (6, 1)))
    x[0, :128] = 0                      # an all-zero tile: the 1e-4 amax floor decides
    x[1, :128] *= 2.0 ** -120           # tiny: quotients reach E4M3 subnormals
    x[2, 5] = 1e30                      # one outlier: everything else underflows in its tile
    x[3, 128:] = np.arange(128) * 0.25 - 16  # many exact ties after the division
    x[4, :] = -x[4, :]
    return x.astype(np.float32)


def test_quantiser_is_bit_identical_to_the_deepseek_rule():
    c = contract("act_quant")
    x = _quant_inputs()
    q = fp8lab.quantize(x, tile=tuple(c.spec["tile"]), fmt=c.spec["fmt"], rule=c.spec["rule"])
    with ft.faithful(c) as run:
        y, s = aq.act_quant(torch.from_numpy(x), kernel=ft.interpret(aq.act_quant_kernel))
    assert run.pinned and run.counts.get("fp32->e4m3")
    bits = y.view(torch.uint8).numpy()
    np.testing.assert_array_equal(bits, np.asarray(q.bits))
    np.testing.assert_array_equal(s.numpy().view(np.uint32), np.asarray(q.scales, np.float32).view(np.uint32))
    y2, _ = aq.act_quant(torch.from_numpy(x), kernel=ft.interpret(aq.act_quant_kernel))
    stock = int((y2.view(torch.uint8).numpy() != bits).sum())
    _report("act_quant", 0, stock, bits.size)
    assert stock > 0  # ties away from zero and truncated subnormals in the stock fp8 cast


@pytest.mark.parametrize("name, bm", [("fp8_gemm_64", 64), ("fp8_gemm_16", 16)])
def test_promoted_gemm_is_bit_identical_under_the_audited_instruction(name, bm):
    c = contract(name)
    rng = np.random.default_rng(11)
    m, n, k = 40, 80, 256  # ragged M and N: masked edges
    a = rng.standard_normal((m, k)).astype(np.float32) * 3
    w = rng.standard_normal((n, k)).astype(np.float32)
    a[3, :128] = 0
    qa = fp8lab.quantize(a, tile=tuple(c.spec["a_tile"]), rule="deepseek")
    qb = fp8lab.quantize(w, tile=tuple(c.spec["b_tile"]), rule="deepseek")
    ref = fp8lab.gemm(qa, qb, accumulate=c.spec["accumulate"], promote_every=c.spec["promote_every"],
                      combine=c.spec["combine"], instruction=c.spec["instruction"], out=c.spec["out"])
    args = (torch.from_numpy(np.array(qa.bits)).view(torch.float8_e4m3fn),
            torch.from_numpy(np.asarray(qa.scales, np.float32)),
            torch.from_numpy(np.array(qb.bits)).view(torch.float8_e4m3fn),
            torch.from_numpy(np.asarray(qb.scales, np.float32)))
    with ft.faithful(c) as run:
        out = fg.fp8_gemm(*args, bm=bm, kernel=ft.interpret(fg.fp8_gemm_kernel))
    got = out.float().numpy().astype(np.float64)
    np.testing.assert_array_equal(got, ref)
    assert run.counts.get(f"dot:{c.spec['instruction']}") and run.counts.get("fma")
    # The audit's instruction matters: the other preset's bits differ on these inputs.
    other = "hopper_fp16" if c.spec["instruction"] == "hopper_fp8" else "hopper_fp8"
    with ft.faithful(c, instruction=other):
        alt = fg.fp8_gemm(*args, bm=bm, kernel=ft.interpret(fg.fp8_gemm_kernel)).float().numpy()
    assert (alt != ref).any()
    stock = fg.fp8_gemm(*args, bm=bm, kernel=ft.interpret(fg.fp8_gemm_kernel)).float().numpy()
    n_stock = int((stock != ref).sum())
    _report(name, 0, n_stock, ref.size)
    assert n_stock > 0  # exact-product matmul and truncating bf16 store


def test_router_is_bit_identical_from_scores_with_ties_and_negative_bias():
    c = contract("router")
    spec = fp8lab.moe.spec(c.spec)
    rng = np.random.default_rng(5)
    t, e = 12, spec["experts"]
    scores = fp8lab.moe.gate_scores(rng.standard_normal((t, e)).astype(np.float32), c.spec)
    scores[0, 10:20] = scores[0, 3]       # exact ties inside a group
    scores[1] = scores[1, 0]              # every expert tied: the lower index wins everywhere
    bias = (rng.standard_normal(e) * 0.05).astype(np.float32)
    bias[::3] -= 1.0                      # negative biased scores (the 0-mask bug's trigger)
    ids_ref, w_ref = fp8lab.moe.route(scores, bias, c.spec, from_scores=True)
    with ft.faithful(c) as run:
        ids, w = rt.route(torch.from_numpy(scores), torch.from_numpy(bias), kernel=ft.interpret(rt.router_kernel))
    assert run.pinned
    np.testing.assert_array_equal(ids.numpy(), ids_ref)
    np.testing.assert_array_equal(w.numpy().view(np.uint32), w_ref.view(np.uint32))
    ids2, w2 = rt.route(torch.from_numpy(scores), torch.from_numpy(bias), kernel=ft.interpret(rt.router_kernel))
    n_stock = int((ids2.numpy() != ids_ref).sum() + (w2.numpy() != w_ref).sum())
    _report("router", 0, n_stock, ids_ref.size * 2)  # FP32 selection and div_rn: the stock run agrees


def test_plain_division_is_refused_with_its_line_and_flagged_on_request():
    c = contract("act_quant_div")
    x = _quant_inputs()[:2]
    with pytest.raises(Exception) as err, ft.faithful(c):
        aq.act_quant(torch.from_numpy(x), div_rn=False, kernel=ft.interpret(aq.act_quant_kernel))
    assert "act_quant.py:" in str(err.value) and "div.full.f32" in str(err.value)
    with ft.faithful(c, approx="flag") as run:
        aq.act_quant(torch.from_numpy(x), div_rn=False, kernel=ft.interpret(aq.act_quant_kernel))
    assert not run.pinned and any("div.full.f32" in f for f in run.flags), run.flags


def test_sigmoid_router_is_refused_and_flag_mode_names_exp():
    c = contract("router_logits")
    logits = np.random.default_rng(2).standard_normal((2, 256)).astype(np.float32)
    bias = np.zeros(256, np.float32)
    with pytest.raises(Exception, match="router.py:"), ft.faithful(c):
        rt.route(torch.from_numpy(logits), torch.from_numpy(bias), from_logits=True,
                 kernel=ft.interpret(rt.router_kernel))
    with ft.faithful(c, approx="flag") as run:
        rt.route(torch.from_numpy(logits), torch.from_numpy(bias), from_logits=True,
                 kernel=ft.interpret(rt.router_kernel))
    assert any("ex2.approx" in f for f in run.flags), run.flags


@triton.jit
def _cast_kernel(x_ptr, e4_ptr, e5_ptr, bf_ptr, back_ptr, N: tl.constexpr):
    i = tl.arange(0, N)
    x = tl.load(x_ptr + i)
    e4 = x.to(tl.float8e4nv)
    tl.store(e4_ptr + i, e4)
    tl.store(e5_ptr + i, x.to(tl.float8e5))
    tl.store(bf_ptr + i, x.to(tl.bfloat16))
    tl.store(back_ptr + i, e4.to(tl.float32))


def test_conversions_are_cudas_on_hostile_values():
    f32 = np.float32
    ulp = np.spacing(f32(1))
    vals = [0.0, -0.0, 1.0625, 1.1875, 448.0, 464.0, 463.99, 1e9, np.inf, -np.inf, np.nan, 2.0 ** -9, 2.0 ** -10,
            3 * 2.0 ** -11, 2.0 ** -7 * 1.0625, 57344.0, 61440.0, 1 + ulp, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -240.0]
    x = np.resize(np.array(vals, dtype=f32), 32)
    kinds = (torch.float8_e4m3fn, torch.float8_e5m2, torch.bfloat16, torch.float32)
    outs = [torch.empty(32, dtype=d) for d in kinds]
    with ft.faithful(contract("act_quant")):  # its contract: cvt.rn.satfinite for fp32 -> e4m3
        ft.interpret(_cast_kernel)[(1,)](torch.from_numpy(x), *outs, N=32)
    np.testing.assert_array_equal(outs[0].view(torch.uint8).numpy(), fp8lab.encode(x, "e4m3"))
    np.testing.assert_array_equal(outs[1].view(torch.uint8).numpy(), fp8lab.encode(x, "e5m2"))
    # cvt.rn.bf16.f32 has no .satfinite: Inf stays Inf (fp8lab.encode saturates unless told otherwise)
    np.testing.assert_array_equal(outs[2].view(torch.int16).numpy().view(np.uint16),
                                  fp8lab.encode(x, "bf16", overflow="inf_or_nan"))
    back = outs[3].numpy()
    want = fp8lab.decode(fp8lab.encode(x, "e4m3"), "e4m3").astype(f32)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(want))
    np.testing.assert_array_equal(back[~np.isnan(want)], want[~np.isnan(want)])
    stock = [torch.empty(32, dtype=d) for d in kinds]
    ft.interpret(_cast_kernel)[(1,)](torch.from_numpy(x), *stock, N=32)
    n = int((stock[0].view(torch.uint8) != outs[0].view(torch.uint8)).sum() +
            (stock[2].view(torch.int16) != outs[2].view(torch.int16)).sum())
    _report("casts", 0, n, 64)
    assert n > 0


@triton.jit
def _decode_kernel(b_ptr, out_ptr):
    i = tl.arange(0, 256)
    tl.store(out_ptr + i, tl.load(b_ptr + i).to(tl.float32))


def test_every_e4m3_pattern_decodes_as_cuda_and_0x7f_is_nan():
    bits = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn)
    out = torch.empty(256, dtype=torch.float32)
    with ft.faithful(instruction="hopper_fp8"):
        ft.interpret(_decode_kernel)[(1,)](bits, out)
    want = fp8lab.decode(np.arange(256, dtype=np.uint8), "e4m3")
    got = out.numpy().astype(np.float64)
    assert np.isnan(got[0x7F]) and np.isnan(got[0xFF])
    np.testing.assert_array_equal(got[~np.isnan(want)], want[~np.isnan(want)])
    stock = torch.empty(256, dtype=torch.float32)
    ft.interpret(_decode_kernel)[(1,)](bits, stock)
    assert stock[0x7F].item() == 480.0  # the stock interpreter's decode (no NaN encoding)


def test_dot_without_a_preset_and_bad_arguments_are_clear_errors():
    need_triton()
    with pytest.raises(ValueError, match="approx"), ft.faithful(approx="maybe"):
        pass
    with pytest.raises(ValueError, match="instruction: unknown"), ft.faithful(instruction="volta"):
        pass
    a = torch.zeros((16, 256), dtype=torch.float8_e4m3fn)
    s = torch.ones((16, 2), dtype=torch.float32)
    b = torch.zeros((16, 256), dtype=torch.float8_e4m3fn)
    sb = torch.ones((1, 2), dtype=torch.float32)
    with pytest.raises(Exception, match="no tensor-core preset"), ft.faithful():
        fg.fp8_gemm(a, s, b, sb, bm=16, bn=16, kernel=ft.interpret(fg.fp8_gemm_kernel))
    with pytest.raises(TypeError, match="triton.jit"):
        ft.interpret(lambda x: x)
    with pytest.raises(RuntimeError, match="not re-entrant"), ft.faithful(instruction="hopper_fp8"):
        with ft.faithful(instruction="hopper_fp8"):
            pass


# -- fp8lab.verify takes the audited contract as the spec

def test_verify_checks_the_triton_gemm_against_its_audited_spec():
    c = contract("fp8_gemm_16")
    run_kernel = ft.interpret(fg.fp8_gemm_kernel)

    def kernel(a, a_s, b, b_s, spec):
        with ft.faithful(c):
            d = fg.fp8_gemm(torch.from_numpy(np.ascontiguousarray(a)).view(torch.float8_e4m3fn), torch.from_numpy(a_s),
                            torch.from_numpy(np.ascontiguousarray(b)).view(torch.float8_e4m3fn), torch.from_numpy(b_s),
                            bm=16, bn=16, kernel=run_kernel)
        return d.float().numpy()

    r = fp8lab.verify(kernel, op="gemm", spec=c, cases=7, seed=3)
    assert r.kind == "bit-identical", str(r)
    assert r.spec["instruction"] == "hopper_fp16" and r.spec["combine"] == "cublas"


def test_a_golden_trace_checks_the_interpreted_kernel():
    # A trace recorded by the emulator under the audited spec (as CI keeps them) checks the real
    # Triton kernel's bits through the faithful interpreter; under a wrong spec it fails.
    from fp8lab import golden

    c = contract("fp8_gemm_64")

    def kernel(a, a_s, b, b_s, spec):
        with ft.faithful(c):
            return fg.fp8_gemm(torch.from_numpy(np.ascontiguousarray(a)).view(torch.float8_e4m3fn), torch.from_numpy(a_s),
                               torch.from_numpy(np.ascontiguousarray(b)).view(torch.float8_e4m3fn),
                               torch.from_numpy(b_s), kernel=ft.interpret(fg.fp8_gemm_kernel)).float().numpy()

    trace = golden.record("gemm", c.spec, seed=5, kind="mixed")
    assert golden.check(trace, kernel).kind == "bit-identical"
    # The same inputs recorded under the FP16 mma.sync preset move 2 of the 30 BF16 outputs (seed 5).
    wrong = golden.record("gemm", {**c.spec, "instruction": "hopper_fp16"}, seed=5, kind="mixed")
    assert golden.check(wrong, kernel).kind != "bit-identical"


def test_verify_takes_contract_json_for_the_quantiser_and_router():
    cq = contract("act_quant")

    def quant(x, spec):
        with ft.faithful(cq):
            y, s = aq.act_quant(torch.from_numpy(np.asarray(x, np.float32)), kernel=ft.interpret(aq.act_quant_kernel))
        return y.view(torch.uint8).numpy(), s.numpy()

    x = _quant_inputs()
    bits, scales = quant(x, None)
    ref = fp8lab.quantize(x, tile=(1, 128), rule="deepseek")
    np.testing.assert_array_equal(bits, np.asarray(ref.bits))
    # Generated cases: ragged tiles, zero / tiny / huge blocks, NaN and an outlier.
    r = fp8lab.verify(quant, op="quantize", spec=cq.to_json(), cases=7, seed=1)
    assert r.kind == "bit-identical", str(r)

    cr = contract("router")

    def router(logits, bias, spec):
        scores = fp8lab.moe.gate_scores(np.asarray(logits, np.float32), spec)
        with ft.faithful(cr):
            ids, w = rt.route(torch.from_numpy(scores), torch.from_numpy(np.asarray(bias, np.float32)),
                              experts_per_token=spec["topk"], groups=spec["groups"], topk_groups=spec["topk_groups"],
                              eps=spec["renorm_epsilon"], scale=spec["routed_scale"],
                              kernel=ft.interpret(rt.router_kernel))
        return ids.numpy(), w.numpy()

    assert fp8lab.verify(router, op="moe_route", spec=cr, cases=2, seed=4).kind == "bit-identical"
    with pytest.raises(ValueError, match="is for op 'moe_route', not 'gemm'"):
        fp8lab.verify(router, op="gemm", spec=cr, cases=1)


def test_an_interpreted_launch_leaves_triton_language_as_it_found_it():
    # Triton's interpreter re-patches triton.language for every jit helper a kernel calls (here
    # tl.max and tl.sigmoid, whose module sees triton.language.core) and restores only the launch's
    # own patches; left so, every later triton.compile in the process failed (tl.zeros in its front
    # end). interpret() puts the attributes back: the same objects before and after, stock and faithful.
    objs = [tl, tl.core, tl.math, tl.core.tensor, tl.core.tensor_descriptor_base]
    before = [dict(vars(o)) for o in objs]
    scores = np.random.default_rng(3).random((4, 256), dtype=np.float32)
    bias = np.zeros(256, np.float32)
    rt.route(torch.from_numpy(scores), torch.from_numpy(bias), kernel=ft.interpret(rt.router_kernel))
    with ft.faithful(contract("router")):
        rt.route(torch.from_numpy(scores), torch.from_numpy(bias), kernel=ft.interpret(rt.router_kernel))
    for o, b in zip(objs, before):
        after = dict(vars(o))
        changed = sorted(n for n in b.keys() | after.keys() if b.get(n) is not after.get(n))
        assert not changed, f"{getattr(o, '__name__', o)}: {changed[:8]}"
