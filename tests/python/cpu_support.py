"""Which kernel variant (emulator/common/isa.hpp) this CPU should get, read independently of
fp8lab from /proc/cpuinfo's flags (the features cmake/dispatch.cmake's flags enable)."""
from __future__ import annotations

NEEDS = {
    "avx2": {"avx2", "fma", "bmi1", "bmi2", "popcnt"},
    "avx512": {"avx2", "fma", "bmi1", "bmi2", "popcnt", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl",
               "avx512_vnni"},
}


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def runnable(built) -> list[str]:
    flags = cpu_flags()
    return ["portable"] + [v for v in ("avx2", "avx512") if v in built and NEEDS[v] <= flags]


def expected_variant(built) -> str:
    return runnable(built)[-1]
