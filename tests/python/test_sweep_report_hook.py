"""The report's heavy stages run through a sweep executor (Context.map) with the same bits."""
import json

from fp8lab.report import sec_accumulation
from fp8lab.report.context import Context
from fp8lab.sweep import PoolExecutor


def test_accumulation_cells_on_a_pool_give_the_in_order_numbers():
    """The accumulation section maps its (distribution, K) cells through ctx.map; a few of its real
    cells (the quick mode's smaller sizes) on a 2-process pool give the numbers of the in-order run,
    float for float. The section assembles its page from these results in cell order either way."""
    def cells(ctx):  # fresh streams for each run: a cell consumes its Generator
        return [(d, k, 16, 16, ctx.rng("accumulation", d, k)) for d in ("gaussian",)
                for k in (256, 512)]

    ctx = Context(mode="quick", seed=3)
    serial = ctx.map(sec_accumulation._cell, cells(ctx))
    with PoolExecutor(2) as pool:
        pctx = Context(mode="quick", seed=3, executor=pool)
        pooled = pctx.map(sec_accumulation._cell, cells(pctx))
    assert json.dumps(serial, sort_keys=True) == json.dumps(pooled, sort_keys=True)
    res, err = serial[1]
    assert err == "" and {"fp8_tensorcore", "fp8_promoted_128", "fp8_promoted_512", "fp32_sequential"} <= set(res)
    assert "fp8_promoted_512" not in serial[0][0]  # K = 256 is not a multiple of 512


def test_context_map_keeps_cell_order_and_raises_the_first_failure():
    ctx = Context(mode="quick")
    assert ctx.map(divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]
    with PoolExecutor(1) as pool:
        ctx = Context(mode="quick", executor=pool)
        assert ctx.map(divmod, [(7, 2), (9, 4), (5, 5)]) == [(3, 1), (2, 1), (1, 0)]
        try:
            ctx.map(divmod, [(1, 1), (1, 0)])
        except ZeroDivisionError:
            pass
        else:
            raise AssertionError("a failing cell must stop the stage")
