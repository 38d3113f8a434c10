"""Section: the numerics contracts of fp8lab's own Triton kernels, read from their compiled code
(fp8lab.audit, sm_90a, no GPU), and what running them under the faithful interpreter
(fp8lab.triton) changes against Triton's stock interpreter. Without Triton (or its CUDA backend)
the section says so and makes no claim."""
from __future__ import annotations

import numpy as np

from .context import Context
from .section import Section

TITLE = "Compiled kernels: numerics contracts read from PTX and SASS"


def run(ctx: Context) -> Section:
    sec = Section("audit", 7, TITLE)
    try:
        import torch  # noqa: F401
        import triton

        from ..audit import ToolchainError, audit, project_kernels
    except ImportError as err:
        sec.status = "unavailable"
        sec.conclusion = f"Triton or torch is not installed here ({err}): no kernel was audited."
        return sec
    names = list(project_kernels().items())
    ctx.progress.stage("audit", len(names) + (0 if ctx.quick else 3))
    contracts = {}
    for name, (module, entry) in names:
        try:
            contracts[name] = audit(f"{module}:{entry}")
        except ToolchainError as err:
            sec.status = "unavailable"
            sec.conclusion = f"Triton cannot compile for sm_90a here ({err}); no contract is shown."
            ctx.progress.finish()
            return sec
        ctx.progress.step(name)
    rows = []
    for name, c in contracts.items():
        mma = "; ".join(f"{m['ptx']} -> {m['preset']}"
                        for m in c.mma) or "-"
        casts = "; ".join(f"{x['from']}->{x['to']} " + ("exact" if x["exact"] else f"{x['rounding']}/{x['overflow']}")
                          for x in c.conversions) or "-"
        approx = "; ".join(f"{a['ptx']} at {a['where']}" for a in c.approximate) or "-"
        rows.append([name, mma, casts, c.contraction.get("combine", "-"), approx, "yes" if c.pinned else "no"])
    sec.table("The project's Triton kernels compiled for sm_90a (Triton " + triton.__version__ + ")",
              ["kernel", "tensor-core instruction -> preset", "conversions", "promotion combine",
               "approximate ops", "pinned"], rows)
    sec.data = {"triton": triton.__version__, "contracts": {n: c.to_dict() | {"toolchain": {}, "sass": {}, "functions": {}}
                                                            for n, c in contracts.items()}}
    g16, g64 = contracts["fp8_gemm_16"], contracts["fp8_gemm_64"]
    sec.conclusion = (f"The same FP8 GEMM source compiles to {g64.mma[0]['preset']} (FP8 wgmma) with 64-row tiles "
                      f"and to {g16.mma[0]['preset']} (FP16 mma.sync) with 16-row tiles; its promotion line "
                      f"`acc += dot * sa * sb` compiles to the {g64.contraction.get('combine')} order; a plain '/' is "
                      "div.full.f32 and tl.sigmoid is ex2.approx — both outside what fp8lab can pin.")
    if not ctx.quick:
        _faithful_vs_stock(ctx, sec, contracts)
    ctx.progress.finish()
    return sec


def _faithful_vs_stock(ctx, sec, contracts):
    import torch

    import fp8lab
    from .. import triton as ft
    from ..triton.kernels import act_quant as aq, fp8_gemm as fg

    rows = []
    rng = ctx.rng("audit", "quant")
    x = (rng.standard_normal((16, 512)) * np.ldexp(1.0, rng.integers(-10, 10, (16, 1)))).astype(np.float32)
    q = fp8lab.quantize(x, tile=(1, 128), rule="deepseek")
    with ft.faithful(contracts["act_quant"]):
        y, _ = aq.act_quant(torch.from_numpy(x), kernel=ft.interpret(aq.act_quant_kernel))
    y2, _ = aq.act_quant(torch.from_numpy(x), kernel=ft.interpret(aq.act_quant_kernel))
    ref = np.asarray(q.bits)
    rows.append(["act_quant (1x128, deepseek rule)", ref.size, int((y.view(torch.uint8).numpy() != ref).sum()),
                 int((y2.view(torch.uint8).numpy() != ref).sum())])
    ctx.progress.step("act_quant")
    rng = ctx.rng("audit", "gemm")
    a = rng.standard_normal((48, 256)).astype(np.float32)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    qa, qb = fp8lab.quantize(a, tile=(1, 128), rule="deepseek"), fp8lab.quantize(w, tile=(128, 128), rule="deepseek")
    # np.array: a writable copy (QTensor.bits is a read-only view, which torch.from_numpy warns about).
    args = (torch.from_numpy(np.array(qa.bits)).view(torch.float8_e4m3fn), torch.from_numpy(np.asarray(qa.scales)),
            torch.from_numpy(np.array(qb.bits)).view(torch.float8_e4m3fn), torch.from_numpy(np.asarray(qb.scales)))
    for name, bm in (("fp8_gemm_64", 64), ("fp8_gemm_16", 16)):
        c = contracts[name]
        ref = fp8lab.gemm(qa, qb, combine=c.spec["combine"], instruction=c.spec["instruction"], out="bf16")
        with ft.faithful(c):
            d = fg.fp8_gemm(*args, bm=bm, kernel=ft.interpret(fg.fp8_gemm_kernel)).float().numpy()
        d2 = fg.fp8_gemm(*args, bm=bm, kernel=ft.interpret(fg.fp8_gemm_kernel)).float().numpy()
        rows.append([f"{name} ({c.spec['instruction']}, {c.spec['combine']})", ref.size, int((d != ref).sum()),
                     int((d2 != ref).sum())])
        ctx.progress.step(name)
    sec.table("Elements that differ from fp8lab's emulator under the audited spec: Triton's interpreter with "
              "fp8lab's semantics (faithful) and as shipped (stock)", ["kernel", "elements", "faithful", "stock"], rows)
    sec.data["faithful_vs_stock"] = rows
    sec.para("The stock interpreter rounds fp32 -> fp8 ties away from zero and truncates subnormals, truncates "
             "fp32 -> bf16, and runs tl.dot on fp8 as an exact-product FP32 matmul (Triton issue #8322); the "
             "faithful run takes the conversions, tensor-core preset and contraction from the audit. What the "
             "interpreter cannot model — warp races, async copies, memory ordering, reduction-tree order and the "
             "approximate operations — is listed in fp8lab.triton.LIMITS.")
