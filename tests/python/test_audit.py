"""fp8lab audit: numerics contracts read from compiled code (Triton 3.9 for sm_90a; nvcc objects).

The oracles are the compiled text itself (the instruction the PTX names), the kernels' own source
lines (found here by text search, not copied from the audit) and hand-written PTX whose combine
order is known by construction. Contracts of the project's Triton kernels are checked in under
contracts/; a compiler or kernel change that moves them fails here until reviewed and updated
(FP8LAB_UPDATE_CONTRACTS=1)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import fp8lab
from fp8lab.audit import ptx as P
from fp8lab.audit.contract import Contract
from triton_support import CONTRACTS, checked_in, contract, need_triton, update_requested

KERNELS = Path(fp8lab.__file__).parent / "triton" / "kernels"
NAMES = ("act_quant", "act_quant_div", "fp8_gemm_64", "fp8_gemm_16", "router", "router_logits")


def _line_of(file: str, text: str) -> str:
    lines = (KERNELS / file).read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if text in line]
    assert len(hits) == 1, (file, text, hits)
    return f"{file}:{hits[0]}"


@pytest.mark.parametrize("name", NAMES)
def test_contract_matches_the_checked_in_one(name):
    c = contract(name)
    import triton

    if not triton.__version__.startswith("3.9.") and not update_requested():
        pytest.skip(f"the checked-in contracts are Triton 3.9's (tools/requirements-dev.txt); this is {triton.__version__}")
    got = json.loads(c.to_json(stable=True))
    path = CONTRACTS / f"{name}.json"
    if update_requested() or not path.exists():
        path.write_text(c.to_json(stable=True) + "\n")
        if not update_requested():
            pytest.fail(f"{path} did not exist; written now — review and commit it")
    assert got == checked_in(name), f"{name}: the compiled numerics moved; diff {path} against fp8lab audit --json"
    # The JSON form round-trips.
    assert Contract.from_dict(c.to_json()).to_dict() == c.to_dict()


def test_64_row_gemm_is_fp8_wgmma_promoted_in_the_cublas_order():
    c = contract("fp8_gemm_64")
    (mma,) = c.mma
    assert mma["ptx"].startswith("wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3")
    assert mma["shape"] == [64, 64, 32] and mma["preset"] == "hopper_fp8"
    assert mma["preset_name"] == "hopper_wgmma_m64nNk32_f32_e4m3"
    assert mma["lines"] == [_line_of("fp8_gemm.py", "acc += tl.dot(a, b)")]
    if c.sass:  # nvdisasm 13 calls the FP8 warpgroup MMA QGMMA
        assert c.sass.get("QGMMA.64x64x32.F32.E4M3.E4M3", 0) > 0, c.sass
    assert c.contraction["combine"] == "cublas" and c.contraction["enabled"] is True
    assert c.contraction["explicit_fma"] == 0  # every fma.rn.f32 is a contraction, none is tl.fma
    assert c.spec["instruction"] == "hopper_fp8" and c.spec["combine"] == "cublas" and c.spec["pinned"]
    (bf16,) = [x for x in c.conversions if x["to"] == "bf16"]
    assert bf16["ptx"] == "cvt.rn.bf16x2.f32" and bf16["rounding"] == "nearest_even"


def test_16_row_fp8_dot_is_fp16_mma_sync():
    # The known surprise: a 16-row FP8 tile lowers to FP16 mma.sync after an exact e4m3 -> f16 cvt.
    c = contract("fp8_gemm_16")
    (mma,) = c.mma
    assert mma["ptx"] == "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"
    assert mma["a"] == "fp16" and mma["acc"] == "fp32" and mma["preset"] == "hopper_fp16"
    assert "FP16" in mma["note"] and "unmeasured" in mma["note"]
    (up,) = [x for x in c.conversions if x["from"] == "e4m3"]
    assert up["ptx"] == "cvt.rn.f16x2.e4m3x2" and up["exact"] and up["to"] == "fp16"
    if c.sass:
        assert c.sass.get("HMMA.16816.F32", 0) > 0 and not any("GMMA" in k for k in c.sass), c.sass
    assert c.spec["instruction"] == "hopper_fp16"


def test_quantiser_casts_with_satfinite_and_plain_division_is_named_by_line():
    pinned = contract("act_quant")
    (cast,) = [x for x in pinned.conversions if x["to"] == "e4m3"]
    assert cast["ptx"] == "cvt.rn.satfinite.e4m3x2.f32" and cast["overflow"] == "saturate"
    assert cast["lines"] == [_line_of("act_quant.py", "tl.store(y_ptr")]
    assert pinned.pinned and pinned.approximate == []
    plain = contract("act_quant_div")
    where = {a["ptx"]: a["where"] for a in plain.approximate}
    assert where["div.full.f32"] == _line_of("act_quant.py", "y = x / s")
    assert where["div.approx.f32"] == _line_of("act_quant.py", "s = amax / 448.0")  # a constant divisor
    assert not plain.pinned and any("div.full.f32" in u for u in plain.unpinned)


def test_sigmoid_is_ex2_approx_inlined_at_the_kernel_line():
    c = contract("router_logits")
    ex2 = [a for a in c.approximate if a["ptx"].startswith("ex2.approx")]
    assert ex2 and ex2[0]["where"] == _line_of("router.py", "s = tl.sigmoid(x)")
    assert ex2[0]["via"].startswith("standard.py:")
    assert contract("router").pinned and not c.pinned


def test_blackwell_is_tcgen05_f8f6f4_with_the_promotion_as_packed_fma():
    c = contract("fp8_gemm_64", arch="sm_100a", sass=False)
    (mma,) = c.mma
    assert mma["ptx"].startswith("tcgen05.mma") and mma["kind"] == "f8f6f4" and mma["preset"] == "blackwell_fp8"
    assert "instruction descriptor" in mma["note"]  # the operand type is assumed, and says so
    assert c.contraction["combine"] == "cublas" and c.spec["instruction"] == "blackwell_fp8"


def test_fusion_off_gives_the_left_to_right_order():
    c = contract("fp8_gemm_64", fp_fusion=False)
    assert c.contraction["fma"] == 0 and c.contraction["combine"] == "triton"
    assert c.spec["combine"] == "triton"


# -- the PTX reader on text whose answer is known by construction

_MMA = "wgmma.mma_async.sync.aligned.m64n8k32.f32.e4m3.e4m3 {%r1,%r2}, %rd1, %rd2, 1, 1, 1;\n"


@pytest.mark.parametrize("body, combine", [
    ("mul.f32 %r10, %r1, %r5;\nfma.rn.f32 %r20, %r10, %r6, %r20;\n", "cublas"),
    ("mul.f32 %r10, %r5, %r6;\nfma.rn.f32 %r20, %r10, %r1, %r20;\n", "deepgemm"),
    ("mul.rn.f32 %r10, %r1, %r5;\nmul.rn.f32 %r11, %r10, %r6;\nadd.rn.f32 %r20, %r20, %r11;\n", "triton"),
    ("mov.b32 %r9, %r2;\nmul.f32 %r10, %r9, %r5;\nfma.rn.f32 %r20, %r10, %r6, %r20;\n", "cublas"),
    # Blackwell: p loaded back from tensor memory, unpacked, scaled, repacked, packed FMA.
    ("tcgen05.ld.sync.aligned.16x32bx2.x32.b32 {%r30, %r31}, [%r4 + 0], 32;\nmov.b64 %rd1, {%r30, %r31};\n"
     "mov.b64 {%r40, %r41}, %rd1;\nmul.f32 %r42, %r5, %r40;\nmul.f32 %r43, %r5, %r41;\nmov.b64 %rd2, {%r43, %r42};\n"
     "fma.rn.f32x2 %rd9, %rd2, %rd7, %rd9;\n", "cublas"),
    ("mul.f32 %r10, %r1, %r5;\nld.shared.f32 %r10, [%r3];\nfma.rn.f32 %r20, %r10, %r6, %r20;\n", None),
])
def test_promotion_combine_is_read_from_register_flow(body, combine):
    ptx = ".visible .entry k(\n)\n{\n" + _MMA + body + "}\n"
    # (the last case: the product's register is overwritten by a load before the fma: no combine)
    assert P.promotion_combines(P.parse(ptx)) == ({"k": {combine: 1}} if combine else {})


def test_reader_takes_loc_inline_asm_and_predicates():
    ptx = ('.file 1 "/x/k.py"\n.visible .entry k()\n{\n.loc 1 7 3\n'
           '@%p1 div.full.f32 %r1, %r2, %r3;\n{  cvt.rn.bf16.f32 %rs9, %f1;}\n'
           '{cvt.rn.satfinite.e4m3x2.f32 %rs1, %f2, %f1;}\n}\n')
    ins = P.parse(ptx)
    assert [i.opcode for i in ins] == ["div.full.f32", "cvt.rn.bf16.f32", "cvt.rn.satfinite.e4m3x2.f32"]
    assert {i.where for i in ins} == {"k.py:7"}
    conv = {c["ptx"]: c for c in P.conversions(ins)}
    assert conv["cvt.rn.bf16.f32"]["overflow"] == "inf_or_nan"
    assert conv["cvt.rn.satfinite.e4m3x2.f32"]["overflow"] == "saturate"
    assert P.approximate_ops(ins)[0]["where"] == "k.py:7"


def test_conversion_modifiers_are_read():
    ptx = (".visible .entry k()\n{\ncvt.rz.satfinite.e5m2x2.f32 %rs1, %f2, %f1;\ncvt.rs.satfinite.e4m3x4.f32 %r1, "
           "{%f1, %f2, %f3, %f4}, %r9;\ncvt.rn.relu.satfinite.e4m3x2.f32 %rs2, %f2, %f1;\ncvt.rn.f32.f16 %f9, %rs3;\n"
           "cvt.rn.f16.f32 %rs4, %f9;\ncvt.u64.u32 %rd1, %r1;\n}\n")
    conv = {c["ptx"]: c for c in P.conversions(P.parse(ptx))}
    assert conv["cvt.rz.satfinite.e5m2x2.f32"]["rounding"] == "toward_zero"
    assert conv["cvt.rs.satfinite.e4m3x4.f32"]["rounding"] == "stochastic"
    assert conv["cvt.rn.relu.satfinite.e4m3x2.f32"]["relu"]
    assert conv["cvt.rn.f32.f16"]["exact"] and conv["cvt.rn.f32.f16"]["rounding"] is None
    assert conv["cvt.rn.f16.f32"]["overflow"] == "inf_or_nan"
    assert "cvt.u64.u32" not in conv  # integer conversions are not numerics of interest


def test_empty_and_garbage_ptx_give_empty_scans():
    for text in ("", "garbage { } ;;; \x00", ".visible .entry k()\n{\n}\n"):
        ins = P.parse(text)
        assert P.mma_instructions(ins) == [] and P.conversions(ins) == [] and P.promotion_combines(ins) == {}


# -- the project's CUDA kernels (objects of this build; nvcc and the cuobjdump wheel needed)

def _gpu_object(name: str) -> Path:
    build = Path(fp8lab._core.__file__).resolve().parents[2]
    obj = build / "gpu" / "CMakeFiles" / "fp8lab_gpu.dir" / f"{name}.o"
    if not obj.exists():
        pytest.skip(f"{obj} not built (no nvcc in this build): the CUDA audit is skipped")
    from fp8lab.audit import ToolchainError, find_tool

    try:
        find_tool("cuobjdump"), find_tool("nvdisasm")
    except ToolchainError as err:
        pytest.skip(str(err))
    return obj


def test_cuda_gemm_object_names_qgmma_e4m3_and_rn_bf16_output():
    from fp8lab.audit import audit

    c = audit(_gpu_object("sm90_fp8_gemm_promoted.cu"))
    fp8 = [m for m in c.mma if m["sass"].startswith("QGMMA.64x128x32.F32.E4M3.E4M3")]
    assert fp8 and fp8[0]["preset"] == "hopper_fp8" and fp8[0]["count"] == 6  # 3 combines x 2 outputs
    (bf16,) = [x for x in c.conversions if x["to"] == "bf16"]
    assert bf16["from"] == "fp32" and bf16["rounding"] == "nearest_even"


def test_cuda_quant_object_names_the_saturating_e4m3_cast():
    from fp8lab.audit import audit

    c = audit(_gpu_object("sm90_fp8_quant.cu"))
    (cast,) = [x for x in c.conversions if x["to"] == "e4m3"]
    assert cast["sass"].startswith("F2FP.SATFINITE.E4M3.F32") and cast["overflow"] == "saturate"
    assert cast["rounding"] == "nearest_even"
    assert not c.pinned  # binary only: MUFU.RCP could be an approximation or an IEEE-division seed


def test_cuda_source_audit_reads_the_cast_modifier_and_its_header_line():
    from fp8lab.audit import ToolchainError, audit

    src = Path(__file__).resolve().parents[2] / "gpu" / "sm90_fp8_quant.cu"
    try:
        c = audit(src, sass=False)  # nvcc -ptx -lineinfo only (the SASS comes from the build's objects above)
    except ToolchainError as err:
        pytest.skip(f"no nvcc here: {err}")
    (cast,) = [x for x in c.conversions if x["to"] == "e4m3"]
    assert cast["ptx"] == "cvt.rn.satfinite.e4m3x2.f32" and cast["overflow"] == "saturate"
    header = (src.parent / "quant_scale.hpp").read_text().splitlines()
    file, line = cast["lines"][0].split(":")
    assert file == "quant_scale.hpp" and "__nv_cvt_float_to_fp8" in header[int(line) - 1]
    assert c.approximate == [] and c.pinned  # its divisions are IEEE div.rn.f32


# -- errors name the argument

def test_bad_kernels_are_clear_errors(tmp_path):
    need_triton()
    from fp8lab.audit import audit
    from fp8lab.triton.kernels.act_quant import act_quant_kernel

    with pytest.raises(FileNotFoundError, match="kernel: .*does not exist"):
        audit(str(tmp_path / "missing.cu"))
    with pytest.raises(ValueError, match="no AUDIT entry or function 'nope'"):
        audit("fp8lab.triton.kernels.router:nope")
    with pytest.raises(ValueError, match="arch"):
        audit("fp8lab.triton.kernels.router:router", arch="sm_91")
    with pytest.raises(ValueError, match="signature"):
        audit(act_quant_kernel)
    with pytest.raises(ValueError, match="no type for argument"):
        audit(act_quant_kernel, signature={"x_ptr": "*fp32"}, constexprs={"BLOCK": 128, "DIV_RN": True})
    (tmp_path / "k.txt").write_text("x")
    with pytest.raises(ValueError, match="not a .cu"):
        audit(str(tmp_path / "k.txt"))
    with pytest.raises(ValueError, match="not an fp8lab contract"):
        Contract.from_dict({"kernel": "x"})


def test_cli_prints_the_contract_and_exits_3_when_unpinned(capsys):
    contract("act_quant_div")  # compiled once for the session
    from fp8lab.cli import main

    assert main(["audit", "fp8lab.triton.kernels.act_quant:act_quant_div", "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["fp8lab_contract"] == 1 and doc["approximate"][0]["ptx"] in ("div.approx.f32", "div.full.f32")
    assert main(["audit", "fp8lab.triton.kernels.act_quant:act_quant"]) == 0
    assert "cvt.rn.satfinite.e4m3x2.f32" in capsys.readouterr().out
    assert main(["audit"]) == 2


def test_cli_verify_takes_a_contract_file_as_the_spec(tmp_path, capsys):
    from fp8lab.cli import main

    path = tmp_path / "act_quant.json"
    path.write_text(contract("act_quant").to_json())
    rc = main(["verify", "--op", "quantize", "--spec", f"@{path}", "--no-golden", "--cases", "3", "--json"])
    out = capsys.readouterr().out
    assert rc == 0 and "bit-identical on all 3 cases" in out, out
    # The file was read as a contract (its op is checked), not as a quantize spec dict.
    with pytest.raises(ValueError, match="is for op 'quantize', not 'gemm'"):
        from fp8lab.verification import run

        run(None, 1, 0, ["gemm"], None, use_golden=False, spec=path.read_text())
