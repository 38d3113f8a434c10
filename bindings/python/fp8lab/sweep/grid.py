"""A sweep's grid: named axes, fixed parameters, samples per point and how they are cut into tasks.

The grid is the whole identity of a sweep. Its canonical form (every default filled in, axes in
name order, JSON with sorted keys) is hashed; the result store records the hash and refuses to mix
results of two different grids.

Tasks. Each point of the Cartesian product of the axes (axes in name order, each axis's values in
the order given, the last axis varying fastest) has ``samples`` independent samples, cut into
shards of ``shard`` samples: one task = one (point, index range [lo, hi)). Task i of a grid is
always the same point and range, whichever executor runs it.

Seeds. Sample j of a point draws from ``numpy.random.default_rng(SeedSequence(task.seed,
spawn_key=(j,)))``, where ``task.seed`` depends only on the grid seed and the values of the
*seed axes* (a kind names them: for GEMM error the inputs depend on K and the distribution, not on
N_C, so every N_C is measured on the same matrices). A sample's numbers therefore do not depend on
the shard size, on the task order or on where it ran. Axis values are keyed by their canonical
JSON through CRC-32, which, unlike ``hash()``, is the same in every Python process.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

GRID_KEYS = ("kind", "fn", "axes", "params", "samples", "shard", "seed", "seed_axes")
MAX_TASKS = 10_000_000  # far beyond any sweep a store file should hold; catches a typo like samples=1e12


def canonical_json(obj) -> str:
    # allow_nan=False: a NaN axis value cannot be told apart from another NaN and would make
    # two grids with different text hash alike.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _positive_int(name: str, v, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(v).__name__} {v!r}")
    if v < lo:
        raise ValueError(f"{name}: must be >= {lo}, got {v}")
    return int(v)


@dataclass(frozen=True)
class Task:
    """One unit of work: a grid point and a range of sample indices, with its seed."""
    index: int
    point: dict
    params: dict
    seed: int
    lo: int
    hi: int

    def rng(self, sample: int) -> np.random.Generator:
        """The random stream of sample ``sample`` (lo <= sample < hi) of this task's point."""
        if not self.lo <= sample < self.hi:
            raise ValueError(f"sample: {sample} is outside this task's range [{self.lo}, {self.hi})")
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(sample,)))

    @property
    def samples(self) -> range:
        return range(self.lo, self.hi)

    def to_json(self) -> dict:
        return {"index": self.index, "point": self.point, "seed": self.seed, "lo": self.lo, "hi": self.hi}


@dataclass(frozen=True)
class Grid:
    kind: str | None          # a registered task kind, or None for a grid run by a user fn
    fn: str | None            # "module:function" when the grid names its function (CLI specs)
    axes: dict                # name -> tuple of values (every axis, defaults filled in)
    params: dict
    samples: int
    shard: int
    seed: int
    seed_axes: tuple
    canonical: str = field(repr=False, compare=False)
    hash: str = field(repr=False, compare=False)

    @property
    def axis_names(self) -> list[str]:
        return sorted(self.axes)

    @property
    def shards_per_point(self) -> int:
        return -(-self.samples // self.shard)

    @property
    def num_points(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def __len__(self) -> int:
        return self.num_points * self.shards_per_point

    def points(self):
        names = self.axis_names
        for values in itertools.product(*(self.axes[n] for n in names)):
            yield dict(zip(names, values))

    def task_seed(self, point: Mapping) -> int:
        key = canonical_json({a: point[a] for a in self.seed_axes})
        ss = np.random.SeedSequence([self.seed, zlib.crc32(key.encode())])
        return int(ss.generate_state(1, np.uint64)[0])

    def tasks(self):
        """Every task in index order."""
        per = self.shards_per_point
        for p, point in enumerate(self.points()):
            seed = self.task_seed(point)
            for s in range(per):
                lo = s * self.shard
                yield Task(p * per + s, point, self.params, seed, lo, min(self.samples, lo + self.shard))

    def to_json(self) -> dict:
        return json.loads(self.canonical)


def callable_name(fn) -> str:
    return f"{getattr(fn, '__module__', None) or '?'}:{getattr(fn, '__qualname__', None) or type(fn).__name__}"


def parse_grid(spec: Mapping, fn: Callable | None = None) -> Grid:
    """Validate a grid spec (a dict, e.g. read from SPEC.json) and fill in its defaults.

    ``{"kind": NAME | "fn": "module:function", "axes": {axis: [values]}, "params": {...},
    "samples": 1, "shard": 1, "seed": 0, "seed_axes": [...]}``. With a kind, axes and params are
    checked against the kind's (``fp8lab.sweep.kinds()``) and unlisted axes take their default
    value. With ``fn`` (a callable passed to ``sweep`` or a "module:function" text) the axes are
    free and every axis is a seed axis unless ``seed_axes`` says otherwise.
    """
    from .kinds import get_kind

    if not isinstance(spec, Mapping):
        raise TypeError(f"grid: expected a dict (JSON object), got {type(spec).__name__}")
    unknown = [k for k in spec if k not in GRID_KEYS]
    if unknown:
        raise ValueError(f"grid: unknown key(s) {unknown}; expected some of {list(GRID_KEYS)}")
    kind_name = spec.get("kind")
    fn_name = spec.get("fn")
    if fn is not None and kind_name is not None:
        raise ValueError(f"grid: names kind {kind_name!r} and a fn was passed too; use one of them")
    if fn is not None:
        if not callable(fn):
            raise TypeError(f"fn: expected a callable (task -> dict), got {type(fn).__name__}")
        # The function's name is part of the grid: a store written by one function is not resumed by another.
        name = callable_name(fn)
        if fn_name is not None and fn_name != name:
            raise ValueError(f"grid: fn: the spec names {fn_name!r} but {name!r} was passed")
        fn_name = name
    if kind_name is None and fn_name is None:
        raise ValueError("grid: needs a 'kind' (see fp8lab.sweep.kinds()) or a 'fn' ('module:function')")
    if kind_name is not None and fn_name is not None:
        raise ValueError("grid: has both 'kind' and 'fn'; use one of them")
    if fn_name is not None and not (isinstance(fn_name, str) and ":" in fn_name):
        raise ValueError(f"grid: fn: expected 'module:function', got {fn_name!r}")

    raw_axes = spec.get("axes", {})
    if not isinstance(raw_axes, Mapping):
        raise TypeError(f"grid: axes: expected an object of axis -> list of values, got {type(raw_axes).__name__}")
    raw_params = spec.get("params", {})
    if not isinstance(raw_params, Mapping):
        raise TypeError(f"grid: params: expected an object, got {type(raw_params).__name__}")
    axes: dict = {}
    for name, values in raw_axes.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"grid: axes: axis names must be non-empty strings, got {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            raise TypeError(f"grid: axes: {name}: expected a list of values, got {type(values).__name__} {values!r}")
        if not values:
            raise ValueError(f"grid: axes: {name}: the list of values is empty")
        axes[name] = list(values)

    if kind_name is not None:
        kind = get_kind(kind_name)
        axes, params = kind.validate(axes, dict(raw_params))
        default_seed_axes = kind.seed_axes
    else:
        params = dict(raw_params)
        default_seed_axes = tuple(sorted(axes))
    for name, values in axes.items():
        keys = [canonical_json(v) for v in values]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"grid: axes: {name}: value(s) {', '.join(dup)} listed twice")
    seed_axes = spec.get("seed_axes", default_seed_axes)
    if isinstance(seed_axes, str) or not isinstance(seed_axes, (list, tuple)):
        raise TypeError(f"grid: seed_axes: expected a list of axis names, got {seed_axes!r}")
    bad = [a for a in seed_axes if a not in axes]
    if bad:
        raise ValueError(f"grid: seed_axes: {bad} are not axes of this grid ({sorted(axes)})")

    samples = _positive_int("grid: samples", spec.get("samples", 1))
    shard = _positive_int("grid: shard", spec.get("shard", 1))
    seed = _positive_int("grid: seed", spec.get("seed", 0), lo=0)
    if seed >= 2**63:
        raise ValueError(f"grid: seed: {seed} is outside [0, 2^63)")
    shard = min(shard, samples)
    body = {"kind": kind_name, "fn": fn_name, "axes": axes, "params": params, "samples": samples,
            "shard": shard, "seed": seed, "seed_axes": sorted(seed_axes)}
    try:
        text = canonical_json(body)
    except (TypeError, ValueError) as err:
        raise ValueError(f"grid: axes and params must be JSON values (no NaN/Inf): {err}") from None
    grid = Grid(kind_name, fn_name, {k: tuple(v) for k, v in axes.items()}, params, samples, shard, seed,
                tuple(sorted(seed_axes)), text, hashlib.sha256(text.encode()).hexdigest())
    if len(grid) > MAX_TASKS:
        raise ValueError(f"grid: {len(grid)} tasks is more than {MAX_TASKS}; use larger shards or fewer values")
    return grid
