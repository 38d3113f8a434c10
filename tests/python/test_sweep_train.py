"""The sweep's training kind: recipe x seed through the training lab gives the numbers of
fp8lab.torch.train itself (the lab's own entry point, run here without its cache)."""
import pytest

import fp8lab

pytest.importorskip("fp8lab.torch.train")


def test_train_kind_matches_the_training_lab():
    from fp8lab.torch import train

    spec = {"kind": "train", "axes": {"recipe": ["bf16"], "model": ["tiny"]},
            "params": {"steps": 2, "seq": 16, "batch": 2, "eval_every": 2}, "samples": 1}
    res = fp8lab.sweep(spec, executor="serial", progress=False)
    assert res.counts()["ok"] == 1, res.errors
    v = res.records[0]["values"]
    lab = train(["bf16"], seeds=[0], model="tiny", steps=2, seq=16, batch=2, eval_every=2, cache_dir=False,
                progress=False)["runs"][0]
    assert v["train_seed"] == [0]
    assert v["final_val"] == [lab["final_val"]] and v["train_loss"] == [lab["train_loss"]]
    assert "tokens_per_s" not in v and "seconds" not in v  # wall clock stays out of the results


def test_train_kind_refuses_an_unknown_recipe():
    with pytest.raises(ValueError, match="recipe.*unknown value 'fp7'"):
        fp8lab.sweep({"kind": "train", "axes": {"recipe": ["fp7"]}}, executor="serial", progress=False)
