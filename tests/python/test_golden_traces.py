"""Golden traces: the file format (read by the `safetensors` package, hashed with hashlib), the
committed fixtures, record/check/diff, and rejection of corrupt files."""
from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import safetensors

import fp8lab
from fp8lab import golden

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "golden"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fp8lab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT)


def small_trace(**spec):
    return golden.record("cast", {"to": "e4m3", **spec}, seed=5, kind="mixed")


def raw(header: dict | str, buffer: bytes = b"") -> bytes:
    text = header if isinstance(header, str) else json.dumps(header)
    return struct.pack("<Q", len(text.encode())) + text.encode() + buffer


# -- the format ------------------------------------------------------------------------------


def test_safetensors_package_reads_a_trace(tmp_path):
    path = tmp_path / "t.safetensors"
    small_trace().write(path)
    data = path.read_bytes()
    tensors = dict(safetensors.deserialize(data))
    assert tensors["y"]["dtype"] == "F8_E4M3" and tensors["x"]["dtype"] == "F32"
    # The FP8 bytes mean the same numbers to ml_dtypes as to fp8lab's decoder.
    y = np.frombuffer(bytes(tensors["y"]["data"]), dtype=ml_dtypes.float8_e4m3fn)
    ours = golden.read_trace(path).tensors["y"].array
    np.testing.assert_array_equal(y.view(np.uint8), ours)
    x = np.frombuffer(bytes(tensors["x"]["data"]), dtype="<f4")
    with np.errstate(over="ignore"):
        want = np.clip(x.astype(np.float64), -448, 448).astype(ml_dtypes.float8_e4m3fn)  # saturating cast
    finite = np.isfinite(x)
    np.testing.assert_array_equal(y[finite].view(np.uint8), want[finite].view(np.uint8))
    with safetensors.safe_open(str(path), "numpy") as f:
        meta = f.metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert set(meta) >= {"format", "op", "spec", "spec_sha256", "producer", "seed", "roles", "sha256"}


def test_metadata_digests_match_hashlib(tmp_path):
    path = tmp_path / "t.safetensors"
    small_trace().write(path)
    with safetensors.safe_open(str(path), "numpy") as f:
        meta = f.metadata()
    tensors = dict(safetensors.deserialize(path.read_bytes()))
    digests = json.loads(meta["sha256"])
    for name, t in tensors.items():
        assert digests[name] == hashlib.sha256(bytes(t["data"])).hexdigest()
    assert meta["spec_sha256"] == hashlib.sha256(meta["spec"].encode()).hexdigest()
    assert meta["spec"] == json.dumps(json.loads(meta["spec"]), sort_keys=True, separators=(",", ":"))
    assert json.loads(meta["roles"]) == {"x": "input", "y": "output"}
    assert meta["producer"] == f"fp8lab {fp8lab.__version__} emulator" and meta["seed"] == "5"


def test_sha256_fips_180_2_vectors():
    assert golden.sha256(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert golden.sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") == \
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"


def test_write_is_atomic_and_refuses_overwrite(tmp_path):
    path = tmp_path / "t.safetensors"
    small_trace().write(path)
    before = path.read_bytes()
    with pytest.raises(golden.TraceError, match="already exists.*--update"):
        small_trace(rounding="toward_zero").write(path)
    assert path.read_bytes() == before
    small_trace(rounding="toward_zero").write(path, update=True)
    assert golden.read_trace(path).spec["rounding"] == "toward_zero"
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary left behind


# -- committed fixtures ----------------------------------------------------------------------


def _read_back(trace):
    """What a trace means once read: op, seed, producer, every tensor's role, dtype, shape and bytes,
    and the spec as its operation reads it (whatever form the file stores it in)."""
    o = golden.operation(trace.op)
    tensors = {k: (t.role, t.dtype, t.array.shape, t.array.tobytes()) for k, t in trace.tensors.items()}
    return trace.op, trace.seed, trace.producer, tensors, o.normalize_spec(o.adapt(trace).spec)


def test_committed_fixtures_match_a_fresh_recompute(tmp_path):
    """Every committed fixture is what a fresh recording gives: byte for byte, or, for a fixture
    written before its spec's stored form changed (gemm traces stored the op's dict before they
    stored to_json(GemmSpec); specs that gained a field with a default), the same tensor bytes and
    the same spec once read back. The fixtures are never rewritten for such a change."""
    written = golden.record_all(tmp_path)
    committed = sorted(p.name for p in FIXTURES.glob("*.safetensors"))
    assert sorted(p.name for p in written) == committed, "run `fp8lab golden record --all --update`"
    earlier_form = []
    for p in written:
        if p.read_bytes() == (FIXTURES / p.name).read_bytes():
            continue
        fresh, old = golden.read_trace(p), golden.read_trace(FIXTURES / p.name)
        assert _read_back(fresh) == _read_back(old), f"{p.name} differs from a fresh recording"
        assert fresh.spec != old.spec  # only the stored form of the spec may differ
        earlier_form.append(p.name)
    # The gemm fixtures keep the earlier form (the op's dict, "a_format", ...): it must go on reading.
    assert {n for n in committed if n.startswith("gemm_")} <= set(earlier_form)


def test_every_fixture_reads_with_the_safetensors_package_and_hashlib():
    for path in sorted(FIXTURES.glob("*.safetensors")):
        data = path.read_bytes()
        tensors = dict(safetensors.deserialize(data))
        with safetensors.safe_open(str(path), "numpy") as f:
            meta = f.metadata()
        digests = json.loads(meta["sha256"])
        assert set(digests) == set(tensors), path.name
        for name, t in tensors.items():
            assert hashlib.sha256(bytes(t["data"])).hexdigest() == digests[name], (path.name, name)
        ours = golden.read_trace(path)
        assert {n: t.dtype for n, t in ours.tensors.items()} == {n: t["dtype"] for n, t in tensors.items()}


def test_fixtures_are_small_and_cover_each_op():
    files = list(FIXTURES.glob("*.safetensors"))
    assert sum(p.stat().st_size for p in files) < 600_000
    ops = {golden.read_trace(p).op for p in files}
    assert {o.name for o in golden.OPERATIONS.values() if o.fixtures()} <= ops


def test_verify_passes_on_the_committed_fixtures():
    r = cli("verify", "--cases", "5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "violation" not in r.stdout.lower()


def test_verify_op_filter_and_json():
    r = cli("verify", "--op", "cast", "--cases", "3", "--json")
    assert r.returncode == 0, r.stderr
    names = [x["name"] for x in json.loads(r.stdout)["results"]]
    assert names and all(n.startswith("cast") for n in names)


def test_one_flipped_bit_fails_naming_the_element(tmp_path):
    src = FIXTURES / "cast_e4m3_nearest_even_saturate.safetensors"
    trace = golden.read_trace(src)
    y = trace.tensors["y"]
    data = bytearray(src.read_bytes())
    # Output y is the last tensor in the file (names sorted: x, y); flip bit 0 of its element 10.
    offset = len(data) - y.array.size + 10
    data[offset] ^= 0x01
    bad = tmp_path / src.name
    bad.write_bytes(bytes(data))
    r = cli("verify", "--golden", tmp_path, "--cases", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "digest mismatch for tensor 'y'" in r.stdout
    assert "violation at [10]" in r.stdout
    r = cli("golden", "check", bad)
    assert r.returncode == 1 and "violation at [10]" in r.stdout


# -- corrupt files: a clear error naming the file and the problem, never a crash ---------------

TENSOR = {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}


@pytest.mark.parametrize("data, message", [
    (b"\x01\x02", "truncated file"),
    (struct.pack("<Q", 1 << 40) + b"{}", "bad header length"),
    (struct.pack("<Q", 100) + b"{}", "bad header length"),
    (raw('{"a": '), "bad JSON header"),
    (raw('{"a": 1, "a": 2}'), "duplicate key"),
    (raw({"a": TENSOR}, b"\0" * 3), "out of range"),
    (raw({"a": TENSOR, "b": {**TENSOR, "data_offsets": [2, 6]}}, b"\0" * 6), "overlaps"),
    (raw({"a": TENSOR, "b": {**TENSOR, "data_offsets": [5, 9]}}, b"\0" * 9), "hole"),
    (raw({"a": {**TENSOR, "dtype": "F8_E3M4"}}, b"\0" * 4), "unknown dtype \"F8_E3M4\""),
    (raw({"a": {**TENSOR, "dtype": "F32"}}, b"\0" * 4), "need 16"),
    (raw({"__metadata__": {"k": 1}}), "not a string"),
    (raw({"a": TENSOR}, b"\0" * 4), "not an fp8lab trace"),
])
def test_corrupt_files_are_rejected(tmp_path, data, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(golden.TraceError) as err:
        golden.read_trace(path)
    assert str(err.value).startswith(str(path) + ": ")
    assert message in str(err.value)
    r = cli("golden", "check", path)
    assert r.returncode == 2 and message in r.stdout


def test_digest_mismatch_and_hand_edited_spec(tmp_path):
    good = small_trace().to_bytes()
    bad = bytearray(good)
    bad[-1] ^= 0x80
    with pytest.raises(golden.TraceError, match="digest mismatch for tensor 'y'"):
        golden.parse_trace(bytes(bad), "edited.safetensors")
    header_len = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + header_len])
    header["__metadata__"]["spec"] = header["__metadata__"]["spec"].replace("nearest_even", "toward_zero")
    text = json.dumps(header, separators=(",", ":"))
    edited = struct.pack("<Q", len(text)) + text.encode() + good[8 + header_len:]
    with pytest.raises(golden.TraceError, match="spec digest mismatch"):
        golden.parse_trace(edited, "edited.safetensors")


def test_truncation_at_every_length_is_an_error_not_a_crash():
    good = small_trace().to_bytes()
    for n in range(0, len(good), 97):
        with pytest.raises(golden.TraceError):
            golden.parse_trace(good[:n], "cut")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="op: unknown"):
        golden.record("nope")
    with pytest.raises(ValueError, match="spec: unknown key"):
        golden.record("cast", {"too": "e4m3"})
    with pytest.raises(ValueError, match="spec: not valid JSON"):
        golden.record("cast", "{")
    with pytest.raises(ValueError, match="seed"):
        golden.record("cast", None, seed=-1)
    t = small_trace()
    t.tensors["x"].role = "weird"
    with pytest.raises(ValueError, match="role"):
        t.write(tmp_path / "t.safetensors")
    assert cli("golden", "record", "--op", "cast").returncode == 2
    assert cli("golden", "check", tmp_path / "missing.safetensors").returncode == 2


# -- record / check / diff through the CLI ---------------------------------------------------


def test_cli_record_check_diff(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert cli("golden", "record", "--op", "cast", "--seed", "3", "--kind", "mixed", "--out", a).returncode == 0
    r = cli("golden", "record", "--op", "cast", "--seed", "3", "--kind", "mixed", "--out", a)
    assert r.returncode == 2 and "already exists" in r.stderr
    spec = json.dumps({"to": "e4m3", "rounding": "toward_zero"})
    assert cli("golden", "record", "--op", "cast", "--seed", "3", "--kind", "mixed", "--spec", spec, "--out", b,
               ).returncode == 0
    r = cli("golden", "check", a, b, "--json")
    assert r.returncode == 0
    assert [x["kind"] for x in json.loads(r.stdout)["results"]] == ["bit-identical", "bit-identical"]
    report = tmp_path / "report.md"
    r = cli("golden", "diff", a, b, "--out", report)
    assert r.returncode == 1, r.stderr
    md = report.read_text()
    assert "- `rounding`: `\"nearest_even\"` → `\"toward_zero\"`" in md
    assert "ULP distance (in e4m3) | elements" in md and "\n1 | " in md  # truncation moves by exactly 1 ULP
    assert "Blocks of 128 with moved elements" in md
    assert "every moved element is a violation" in md
    page = tmp_path / "report.html"
    assert cli("golden", "diff", a, b, "--html", page, "--out", tmp_path / "r2.md").returncode == 1
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<table>" in text and "<code>rounding</code>" in text
    r = cli("golden", "diff", a, a)
    assert r.returncode == 0 and "**bit-identical**: 0 of" in r.stdout


def test_diff_counts_agree_with_an_independent_count(tmp_path):
    ta = small_trace()
    tb = small_trace(rounding="toward_zero")
    d = golden.diff(ta, tb)
    ya, yb = ta.tensors["y"].array, tb.tensors["y"].array
    assert d.moved == int(np.count_nonzero(ya != yb))
    # Toward zero never moves a value away from zero, and only ever by one E4M3 step.
    va = golden.values_of(ya, "F8_E4M3")
    vb = golden.values_of(yb, "F8_E4M3")
    moved = ya != yb
    assert np.all(np.abs(vb[moved]) < np.abs(va[moved]))
    assert f"{d.moved} of {ya.size} elements moved" in d.markdown


def test_diff_rows_and_blocks_of_a_2d_output(tmp_path):
    ta = golden.record("cast", {"to": "e4m3"}, inputs={"x": np.linspace(-3, 3, 300 * 2, dtype=np.float32).reshape(2, 300)})
    tb = golden.record("cast", {"to": "e4m3"}, inputs={"x": ta.tensors["x"].array})
    tb.tensors["y"].array = tb.tensors["y"].array.copy()
    tb.tensors["y"].array[1, 200] ^= 1
    d = golden.diff(ta, tb)
    assert "Rows with moved elements: 1 (1)" in d.markdown
    assert "(0, 1): 1" in d.markdown  # row block 0, column block 1 (columns 128..255)
    assert d.verdict.kind == "violation"


def test_diff_refuses_traces_of_different_inputs():
    with pytest.raises(ValueError, match="same inputs"):
        golden.diff(golden.record("cast", None, seed=1), golden.record("cast", None, seed=2))


# -- the verdict vocabulary ------------------------------------------------------------------


def test_verdicts_bit_identical_within_bound_violation():
    exact = np.array([1.0, 2.0, 3.0])
    v = golden.compare_values(exact, exact, fmt="bf16", what="t")
    assert v.kind == "bit-identical"
    got = np.array([1.0, 2.0 + 2.0 ** -6, 3.0])  # one bf16 ULP at 2 is 2^-6
    v = golden.compare_values(got, exact, fmt="bf16", what="t", exact=exact, bound=np.full(3, 2.0 ** -5))
    assert v.kind == "within-bound" and v.details["max_ulp"] == 1 and v.details["differing"] == 1
    v = golden.compare_values(got, exact, fmt="bf16", what="t", exact=exact, bound=np.full(3, 2.0 ** -7))
    assert v.kind == "violation" and v.details["first_violation"]["index"] == 1
    assert "violation at [1]" in v.summary


def test_nan_payload_and_sign_of_zero_count_as_differences():
    a = np.array([0x7F, 0x00], dtype=np.uint8)
    b = np.array([0xFF, 0x00], dtype=np.uint8)  # -NaN vs NaN
    assert golden.compare_tensors("y", "F8_E4M3", a, b).kind == "violation"
    z = np.array([0x80], dtype=np.uint8)  # -0 vs +0
    assert golden.compare_tensors("y", "F8_E4M3", z, np.array([0], dtype=np.uint8)).kind == "violation"


# -- what a gemm trace stores ----------------------------------------------------------------


def test_gemm_trace_stores_exactly_to_json_of_its_gemm_spec(tmp_path):
    spec = {"combine": "triton", "out": "fp32", "a_tile": [1, 128], "b_tile": [128, 128], "pinned": False}
    path = tmp_path / "g.safetensors"
    golden.record("gemm", spec, seed=4, kind="random").write(path)
    with safetensors.safe_open(str(path), "numpy") as f:
        meta = f.metadata()
    # The spec metadata is the emulator's to_json(GemmSpec), byte for byte (keys sorted, nothing else).
    assert meta["spec"] == ('{"accumulate":"promoted","combine":"triton","instruction":"hopper_fp8","out":"fp32",'
                            '"promote_every":128}')
    assert meta["spec"] == fp8lab._core.gemm_spec_json({"combine": "triton", "out": "fp32"})
    assert meta["spec_sha256"] == hashlib.sha256(meta["spec"].encode()).hexdigest()
    assert (meta["a.format"], meta["a.tile"], meta["b.format"], meta["b.tile"], meta["pinned"]) == \
        ("e4m3", "1x128", "e4m3", "128x128", "false")
    t = golden.read_trace(path)
    o = golden.operation("gemm")
    full = o.normalize_spec(o.adapt(t).spec)
    assert full == o.normalize_spec(spec) and full["pinned"] is False
    assert golden.check(path).kind == "bit-identical"


def test_gemm_trace_in_the_earlier_form_still_checks(tmp_path):
    """A trace that stores the op's own dict (a_format, a_tile, ..., pinned: what the committed
    fixtures hold) reads to the same spec and checks like one in the current form; a changed
    output bit is a violation in both."""
    new = golden.record("gemm", {"a_tile": [1, 128], "b_tile": [128, 128]}, seed=3, kind="mixed")
    o = golden.operation("gemm")
    full = o.normalize_spec(o.adapt(new).spec)
    old = golden.Trace(op="gemm", spec=full, seed=3, tensors=dict(new.tensors))
    for name, t in (("new", new), ("old", old)):
        path = tmp_path / f"{name}.safetensors"
        t.write(path)
        back = golden.read_trace(path)
        assert ("a_format" in back.spec) == (name == "old")
        assert o.normalize_spec(o.adapt(back).spec) == full
        assert golden.check(path).kind == "bit-identical"
        d = t.tensors["d"]
        t.tensors["d"] = golden.TraceTensor("output", d.dtype, d.array.copy())
        t.tensors["d"].array.flat[0] ^= 1
        t.write(path, update=True)
        assert golden.check(path).kind == "violation"
        t.tensors["d"] = d
    committed = golden.read_trace(FIXTURES / "gemm_promoted_triton_bf16.safetensors")
    assert committed.spec["a_format"] == "e4m3" and golden.check(committed).kind == "bit-identical"


@pytest.mark.parametrize("extra, message", [
    ({"a.tile": "1by128"}, "metadata 'a.tile' = '1by128' is not RxC"),
    ({"a.format": None}, "needs metadata 'a.format'"),
    ({"pinned": "yes"}, "metadata 'pinned' = 'yes': expected 'true' or 'false'"),
])
def test_gemm_trace_metadata_errors_name_the_key(tmp_path, extra, message):
    t = golden.record("gemm", None, seed=1, kind="random")
    for k, v in extra.items():
        if v is None:
            del t.extra[k]
        else:
            t.extra[k] = v
    path = tmp_path / "bad.safetensors"
    t.write(path)
    with pytest.raises(ValueError, match=message):
        golden.check(path)


# -- traces written by other producers (gpu/hardware_trace.hpp) ---------------------------------


def test_hardware_gemm_trace_layout_is_checked(tmp_path):
    """gpu/hardware_trace.hpp stores a.bits / a.scales (+ "a.tile" metadata) and the bare GemmSpec
    JSON; such a trace checks like ours, and a changed output bit is a violation."""
    ours = golden.record("gemm", {"a_tile": [1, 128], "b_tile": [128, 128]}, seed=9, kind="ragged")
    spec = {k: ours.spec[k] for k in ("accumulate", "combine", "instruction", "out", "promote_every")}
    t = ours.tensors
    m, k = t["a"].array.shape
    n = t["b"].array.shape[0]
    hw = golden.Trace(op="gemm", spec=spec, seed=9, producer="NVIDIA H100, driver 550, deepgemm sm90",
                      tensors={"a.bits": golden.TraceTensor("input", "U8", t["a"].array),
                               "a.scales": golden.TraceTensor("input", "F32", t["a_scales"].array),
                               "b.bits": golden.TraceTensor("input", "U8", t["b"].array),
                               "b.scales": golden.TraceTensor("input", "F32", t["b_scales"].array),
                               "d": t["d"]},
                      extra={"a.tile": f"1x{min(128, k)}" if k < 128 else "1x128",
                             "b.tile": f"{min(128, n)}x{min(128, k)}" if k < 128 or n < 128 else "128x128"})
    path = tmp_path / "hw_gemm.safetensors"
    hw.write(path)
    assert golden.check(path).kind == "bit-identical"
    hw.tensors["d"] = golden.TraceTensor("output", t["d"].dtype, t["d"].array.copy())
    hw.tensors["d"].array.flat[0] ^= 1
    hw.write(path, update=True)
    v = golden.check(path)
    assert v.kind == "violation" and "violation at [0, 0]" in v.summary


def test_tensor_core_probe_trace_against_a_published_probe(tmp_path):
    """REFERENCE.md's single-instruction probe (E4M3, FP32 D): a = [1, 2^-6], b = [1, 2^-7] gives
    0x3F800400 on H100 — written as a hardware probe trace, it checks bit-identical; 0x3F800000
    (what a 13-bit truncation of the *sum* would give) is reported as a violation."""
    a = np.zeros(32, np.float32)
    b = np.zeros(32, np.float32)
    a[:2] = [1.0, 2.0 ** -6]
    b[:2] = [1.0, 2.0 ** -7]
    def probe(d_bits):
        return golden.Trace(op="tc_probe", spec={"instruction": "hopper_fp8"}, producer="H100 probe",
                            tensors={"p1.a": golden.TraceTensor("input", "F32", a),
                                     "p1.b": golden.TraceTensor("input", "F32", b),
                                     "p1.c": golden.TraceTensor("input", "U32", np.zeros(1, np.uint32)),
                                     "p1.d_wgmma": golden.TraceTensor("output", "U32", np.array([d_bits], np.uint32))})
    probe(0x3F800400).write(tmp_path / "good.safetensors")
    probe(0x3F800000).write(tmp_path / "bad.safetensors")
    assert golden.check(tmp_path / "good.safetensors").kind == "bit-identical"
    v = golden.check(tmp_path / "bad.safetensors")
    assert v.kind == "violation" and "p1.d_wgmma" in v.summary


def test_a_trace_missing_a_tensor_is_a_clear_error(tmp_path):
    t = small_trace()
    del t.tensors["x"]
    t.write(tmp_path / "t.safetensors")
    with pytest.raises(ValueError, match="needs tensor 'x'"):
        golden.check(tmp_path / "t.safetensors")


def test_record_all_refuses_to_overwrite_without_update(tmp_path):
    assert cli("golden", "record", "--all", "--dir", tmp_path).returncode == 0
    r = cli("golden", "record", "--all", "--dir", tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert cli("golden", "record", "--all", "--dir", tmp_path, "--update").returncode == 0
