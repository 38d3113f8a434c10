"""``fp8lab audit KERNEL``: the numerics contract of a compiled kernel (fp8lab.audit), as text or
JSON. KERNEL is ``package.module:NAME`` / ``file.py:NAME`` (an AUDIT entry or a Triton jit function
with --signature), a ``.cu`` source, or a ``.cubin``/``.o``/``.a``/``.ptx`` file. ``--project``
audits fp8lab's own Triton kernels. Exit 0 when every audited kernel is pinned, 3 when one has
operations fp8lab cannot pin, 2 on usage, file or toolchain errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _kv(items, what: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what}: {item!r} is not NAME=VALUE")
        k, v = item.split("=", 1)
        if what == "--constexpr":
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                raise ValueError(f"{what}: {k}={v!r} is not a JSON value (int, float, true/false)") from None
        out[k] = v
    return out


def _audit(args) -> int:
    from .audit import ToolchainError, audit, project_kernels

    if bool(args.kernel) == bool(args.project):
        raise ValueError("give one KERNEL or --project")
    targets = [f"{m}:{e}" for m, e in project_kernels().values()] if args.project else [args.kernel]
    sig = _kv(args.signature, "--signature") or None
    consts = _kv(args.constexpr, "--constexpr") or None
    contracts = []
    for t in targets:
        try:
            contracts.append(audit(t, signature=sig, constexprs=consts, arch=args.arch, num_warps=args.num_warps,
                                   fp_fusion={"on": True, "off": False, "default": None}[args.fp_fusion],
                                   op=args.op, sass=not args.no_sass))
        except ToolchainError as err:
            print(f"fp8lab audit: error: {err}", file=sys.stderr)
            return 2
    if args.json:
        doc = [c.to_dict() for c in contracts] if args.project else contracts[0].to_dict()
        text = json.dumps(doc, indent=1, sort_keys=True)
    else:
        text = "\n\n".join(c.text() for c in contracts)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0 if all(c.pinned for c in contracts) else 3


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="compile a kernel (no GPU) and print its numerics contract")
    p.add_argument("kernel", nargs="?", help="module:NAME, file.py:NAME, file.cu, .cubin/.o/.a or .ptx")
    p.add_argument("--project", action="store_true", help="audit fp8lab's own Triton kernels")
    p.add_argument("--arch", default="sm_90a", help="target architecture (sm_80, sm_89, sm_90a, sm_100a)")
    p.add_argument("--num-warps", type=int, default=4)
    p.add_argument("--fp-fusion", choices=("on", "off", "default"), default="default",
                   help="Triton's enable_fp_fusion (default: Triton's own default)")
    p.add_argument("--signature", action="append", metavar="ARG=TYPE", help="Triton argument type, e.g. x_ptr=*fp32")
    p.add_argument("--constexpr", action="append", metavar="NAME=VALUE", help="Triton constexpr value (JSON)")
    p.add_argument("--op", choices=("gemm", "quantize", "moe_route"), help="the fp8lab operation the kernel implements")
    p.add_argument("--no-sass", action="store_true", help="skip the SASS disassembly")
    p.add_argument("--json", action="store_true", help="print the contract as JSON")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=_audit)
