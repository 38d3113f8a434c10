"""The package as a user gets it: ``pip wheel`` of the source tree (scikit-build-core, the wheel's
own settings from pyproject.toml: no -march=native, every kernel variant), then ``pip install`` of
that wheel into a fresh virtual environment (no system site-packages; numpy, ml_dtypes,
safetensors and matplotlib come from the index through pip's cache, as for a user).

Used by tests/python/test_wheel_install.py and bench/bench_wheel.py. The build directory
(build/wheel-user) is kept between runs, so a rebuild compiles only what changed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "wheel-user"


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def build_wheel(out_dir: Path) -> Path:
    """Builds the wheel into out_dir with this interpreter's pip (its scikit-build-core and
    pybind11: --no-build-isolation, so that no build requirement is downloaded) and returns it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("fp8lab-*.whl"):
        old.unlink()
    env = dict(os.environ)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
          f"-Cbuild-dir={BUILD_DIR}", "-w", str(out_dir), str(ROOT)], env=env, cwd=ROOT)
    wheels = sorted(out_dir.glob("fp8lab-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip wheel left {len(wheels)} fp8lab wheels in {out_dir}")
    return wheels[0]


def fresh_venv(venv_dir: Path, wheel: Path) -> Path:
    """A new venv with the wheel and its runtime dependencies installed; returns its python."""
    if venv_dir.exists():
        shutil.rmtree(venv_dir)
    _run([sys.executable, "-m", "venv", str(venv_dir)])
    py = venv_dir / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)])
    return py


def clean_env() -> dict:
    """The environment a user's shell would have: none of this checkout's PYTHONPATH or overrides."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "FP8LAB_CPU", "FP8LAB_PROFILE", "PYTHONHOME", "VIRTUAL_ENV")}
    return env


def run_json(py: Path, code: str, cwd: Path, **extra_env) -> dict:
    """Runs code (which prints one JSON object last) with the venv's python, outside the source tree."""
    env = clean_env()
    env.update(extra_env)
    r = _run([str(py), "-c", code], cwd=cwd, env=env, timeout=1200)
    return json.loads(r.stdout.strip().splitlines()[-1])


def installed(work: Path) -> tuple[Path, dict]:
    """Builds, installs and returns (venv python, seconds per step)."""
    t0 = time.perf_counter()
    wheel = build_wheel(work / "wheelhouse")
    t1 = time.perf_counter()
    py = fresh_venv(work / "venv", wheel)
    t2 = time.perf_counter()
    return py, {"wheel build": t1 - t0, "venv + pip install": t2 - t1}
