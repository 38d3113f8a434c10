"""``fp8lab scale-rules``: the table and the JSON list agree with fp8lab.scale_rule()."""
import json

import fp8lab
from fp8lab.cli import main


def test_scale_rules_table_lists_every_rule(capsys):
    assert main(["scale-rules"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["name", "amax_nan", "floor_at"]
    names = [line.split()[0] for line in out[2:]]
    assert names == fp8lab.scale_rules()


def test_scale_rules_json_round_trips_into_quantize(capsys):
    import numpy as np

    assert main(["scale-rules", "--json"]) == 0
    specs = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in specs] == fp8lab.scale_rules()
    x = np.linspace(-3, 5, 256, dtype=np.float32).reshape(2, 128)
    for spec in specs:
        tile = (1, 32) if spec["tile_elements"] == 32 else (1, 16) if spec["storage"] == "e4m3" else (1, 128)
        a = fp8lab.quantize(x, tile=tile, rule=spec)
        b = fp8lab.quantize(x, tile=tile, rule=spec["name"])
        assert np.array_equal(a.bits, b.bits) and np.array_equal(a.scales, b.scales)
