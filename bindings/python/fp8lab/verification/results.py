"""What a verify/check run produced: one :class:`CaseResult` per checked thing, the exit code, and
the JSON and JUnit renderings (the decoded first offenders in each)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from ..golden import Verdict, operation, values_of

#: exit codes of `fp8lab verify` and `fp8lab golden check`
EXIT_OK, EXIT_VIOLATION, EXIT_ERROR, EXIT_WITHIN_BOUND = 0, 1, 2, 3


def plain(x):
    """Strict JSON: non-finite numbers as strings, like the C++ verdicts."""
    return x if not isinstance(x, float) or np.isfinite(x) else repr(x)


def decoded_inputs(op: str | None, spec: dict | None, inputs: dict, limit: int = 64) -> dict:
    """A counterexample's inputs as values (FP8/BF16 bit patterns decoded), with the bits kept."""
    tensors = {}
    if op is not None and spec is not None:
        try:
            tensors = operation(op).input_tensors(spec, inputs)
        except (KeyError, ValueError, TypeError):
            tensors = {}
    out = {}
    for k, v in inputs.items():
        a = np.asarray(v)
        entry = {"shape": list(a.shape)}
        t = tensors.get(k)
        if t is not None and t.dtype not in ("F32", "F64", "F16"):
            entry["dtype"] = t.dtype
            entry["bits"] = [f"0x{int(b):x}" for b in np.asarray(t.array).ravel()[:limit]]
            entry["values"] = [plain(x) for x in values_of(t.array, t.dtype).ravel()[:limit].tolist()]
        else:
            entry["values"] = [plain(x) for x in a.astype(np.float64).ravel()[:limit].tolist()]
        out[k] = entry
    return out


@dataclasses.dataclass
class CaseResult:
    """One checked thing: a golden trace or one generated case (or a shrunk counterexample)."""

    name: str
    verdict: Verdict | None
    error: str | None = None
    inputs: dict | None = None  # the (shrunk) failing inputs of a generated case
    op: str | None = None
    spec: dict | None = None

    @property
    def kind(self) -> str:
        return "error" if self.error else self.verdict.kind

    def to_dict(self) -> dict:
        d = {"name": self.name, "kind": self.kind}
        if self.error:
            d["error"] = self.error
        else:
            d["verdict"] = self.verdict.to_dict()
            d["offenders"] = offenders(self.verdict)
        if self.inputs is not None:
            d["counterexample"] = decoded_inputs(self.op, self.spec, self.inputs)
        return d


def offenders(v: Verdict) -> list[dict]:
    """The first offending elements of a verdict (and of its parts), decoded: got / expected /
    exact / bound with their coordinates."""
    out = []
    for part in [v.details, *v.details.get("parts", [])]:
        for o in part.get("first_violations") or ([part["first_violation"]] if part.get("first_violation") else []):
            out.append({"what": part.get("what", ""), **o})
    return out


def offender_lines(v: Verdict, limit: int = 8) -> list[str]:
    lines = []
    for o in offenders(v)[:limit]:
        text = f"at {o.get('coordinate')}: got {o.get('got')}, expected {o.get('expected')}"
        if o.get("bound") not in (None, 0):
            text += f", exact {o.get('exact')}, bound {o.get('bound')}"
        lines.append(f"{o['what']} {text}".strip())
    return lines


def exit_code(results: list[CaseResult], accept_within_bound: bool = False) -> int:
    """1 when anything is a violation (an error elsewhere does not hide it), else 2 on an error,
    3 when something changed within its bound (0 with accept_within_bound), else 0."""
    kinds = {r.kind for r in results}
    if "violation" in kinds:
        return EXIT_VIOLATION
    if "error" in kinds:
        return EXIT_ERROR
    if "within-bound" in kinds and not accept_within_bound:
        return EXIT_WITHIN_BOUND
    return EXIT_OK


def junit_xml(results: list[CaseResult], accept_within_bound: bool = False, suite: str = "fp8lab verify") -> str:
    from xml.sax.saxutils import escape, quoteattr

    failures = sum(r.kind == "violation" or (r.kind == "within-bound" and not accept_within_bound) for r in results)
    errors = sum(r.kind == "error" for r in results)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuite name={quoteattr(suite)} tests="{len(results)}" failures="{failures}" errors="{errors}">']
    for r in results:
        lines.append(f'  <testcase classname="fp8lab.verify" name={quoteattr(r.name)}>')
        if r.kind == "error":
            lines.append(f'    <error message={quoteattr(r.error)}>{escape(r.error)}</error>')
        elif r.kind == "violation" or (r.kind == "within-bound" and not accept_within_bound):
            body = "\n".join([*offender_lines(r.verdict), json.dumps(r.to_dict(), sort_keys=True)])
            lines.append(f'    <failure type="{r.kind}" message={quoteattr(r.verdict.summary)}>{escape(body)}</failure>')
        elif r.kind == "within-bound":
            lines.append(f'    <system-out>{escape(r.verdict.summary)} (accepted)</system-out>')
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"
