"""Golden-trace operation "mla_index" (the DeepSeek-V3.2 lightning indexer): traces record and check
bit-identically, verify accepts a kernel whose selection differs only in order and in the choice
among tied tokens, and rejects one whose arithmetic is wrong, naming the query."""
from __future__ import annotations

import numpy as np

from fp8lab import golden, mla
from fp8lab.verification.cases import verify


def emulator(q, k, weights, starts, ends, spec):
    r = mla.index(q, k, weights, starts=starts, ends=ends, spec=spec)
    return r["logits"], r["indices"]


def test_trace_records_and_checks_bit_identically(tmp_path):
    t = golden.record("mla_index", {"reduction": "deepgemm_sm90"}, seed=3, kind="mixed")
    path = tmp_path / "t.safetensors"
    t.write(path)
    v = golden.check(golden.read_trace(path))
    assert v.kind == "bit-identical", v.summary


def test_verify_accepts_any_order_and_any_tie_choice():
    def reordered(q, k, weights, starts, ends, spec):
        logits, idx = emulator(q, k, weights, starts, ends, spec)
        out = idx.copy()
        for i in range(len(out)):  # reversed, and among tokens tied at the k-th logit the last ones
            row = logits[i]
            valid = idx[i][idx[i] >= 0]
            if len(valid) == 0:
                continue
            t = row[valid].min()
            above = valid[row[valid] > t]
            at = np.flatnonzero(row == t)
            pick = np.concatenate([above, at[::-1][:len(valid) - len(above)]])[::-1]
            out[i] = -1
            out[i, -len(pick):] = pick
        return logits, out

    r = verify(reordered, op="mla_index", cases=6, seed=1)
    assert r.ok, str(r)


def _key_scale_twice(q, k, weights, starts, ends, spec):
    r = mla.index(q, k, weights, starts=starts, ends=ends, spec=spec)
    wrong = (r["logits"] * r["k_scale"][None, :]).astype(np.float32)
    idx = r["indices"].copy()
    order = np.argsort(-wrong, axis=1, kind="stable")
    for i in range(len(idx)):
        keep = [j for j in order[i] if starts[i] <= j < ends[i]][:idx.shape[1]]
        idx[i] = -1
        idx[i, :len(keep)] = keep
    return r["logits"], wrong, idx


def test_verify_rejects_a_key_scale_applied_twice_naming_the_query():
    def wrong_logits(*args):
        _, wrong, idx = _key_scale_twice(*args)
        return wrong, idx

    def wrong_selection(*args):  # right logits, selection from the wrong ones
        logits, _, idx = _key_scale_twice(*args)
        return logits, idx

    r = verify(wrong_logits, op="mla_index", cases=4, seed=2, shrink=False)
    assert not r.ok and "logits: violation" in r.verdict.summary
    r = verify(wrong_selection, op="mla_index", cases=4, seed=2, shrink=False)
    assert not r.ok and "indices: violation: query " in r.verdict.summary, r.verdict.summary
