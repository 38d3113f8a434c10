"""Report section "indexer": its change counts against an independent numpy computation on the same
inputs (plain set differences of float64 top-k; random logits have no ties), and its bookkeeping."""
from __future__ import annotations

import numpy as np

from fp8lab import mla
from fp8lab.report import sec_indexer
from fp8lab.report.context import Context

from test_mla_index import np_exact_unquantised


def test_changes_match_a_numpy_recount():
    ctx = Context("quick", seed=3)
    lengths, queries, topk = [200, 500], 2, 32
    rows = sec_indexer.measure(ctx, lengths, queries, topk)
    q, k, w = sec_indexer._inputs(Context("quick", seed=3).rng("indexer"), queries, lengths[-1])
    fp8 = mla.index(q, k, w, topk=topk)["logits"].astype(np.float64)
    exact = np_exact_unquantised(q, k, w)
    for L, row in zip(lengths, rows):
        want = [len(set(np.argsort(-exact[i, :L])[:topk]) - set(np.argsort(-fp8[i, :L])[:topk])) for i in range(queries)]
        assert row["changed_vs_exact"] == np.mean(want)
        assert row["max_changed_vs_exact"] == max(want)
        assert 0 <= row["changed_vs_exact_quantised"] <= topk
        assert 0 <= row["lost_attention_mass"] < 1 and row["attention_rel_error"] >= 0
        assert (row["attention_rel_error"] == 0) == (max(want) == 0)
        # the same proxy through fp8lab.mla.sparse_decode
        assert (row["sparse_decode_rel_error"] == 0) == (max(want) == 0)
        assert np.isfinite(row["sparse_decode_rel_error"])


def test_section_runs_quick_with_its_numbers():
    sec = sec_indexer.run(Context("quick", seed=0))
    assert sec.status == "ok"
    assert [r["context"] for r in sec.data["rows"]] == [4096, 16384]
    assert sec.data["spec"]["topk"] == 2048 and sec.data["spec"]["heads"] == 64
    assert f"{sec.data['rows'][0]['changed_vs_exact']:.3g} differ" in sec.conclusion
    assert "sparse_decode" in sec.data["attention_output"]
