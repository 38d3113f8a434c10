"""Blackwell-era quantiser steps that are not scale rules: the size-16 random Hadamard transform
TransformerEngine applies before NVFP4 quantisation of Wgrad operands, and stochastic rounding
driven by given random bits (PTX ``cvt.rs.satfinite``'s ``rbits``), so SR is a deterministic
function checked bit for bit. NVFP4 and MX scale rules themselves are ``fp8lab.scale_rules()``."""
from __future__ import annotations

import numpy as np

from . import _core

#: TransformerEngine's fixed sign vector (reference_nvfp4.py get_wgrad_sign_vector).
RHT_SIGNS = tuple(_core.rht16_signs())

#: Random bits per value that cvt.rs takes: 16 for .bf16x2/.f16x2, 8 for the x4 FP8/FP6/FP4 forms.
RBITS_WIDTH = {"bf16": 16, "fp16": 16, "e4m3": 8, "e5m2": 8, "e2m3fn": 8, "e3m2fn": 8, "e2m1": 8}


def rht16(x) -> np.ndarray:
    """x (rows x cols float32, cols a multiple of 16) with every run of 16 along a row multiplied by
    diag(RHT_SIGNS) H16 / 4 (H16 Sylvester), each output the exact sum rounded once to float32."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a 2-D numpy array of float32, got {type(x).__name__}")
    return _core.rht16(x)


def stochastic_round(x, fmt: str, rbits, width: int | None = None) -> np.ndarray:
    """x (float32) rounded to ``fmt`` the way cvt.rs.satfinite rounds with random bits ``rbits``
    (uint32, one per element, each below 2^width): the bits are added to the top ``width``
    discarded bits of x's significand and a carry rounds away from zero. ``width`` defaults to
    RBITS_WIDTH[fmt]. Returns the format's bit patterns."""
    if not isinstance(fmt, str):
        raise TypeError(f"fmt: expected a format name, got {type(fmt).__name__}")
    return _core.stochastic_round(x, fmt, rbits, sr_width(fmt, width))


def sr_width(fmt: str, width) -> int:
    """The random bits per value: ``width`` checked, or cvt.rs's width for ``fmt`` (RBITS_WIDTH)."""
    if width is None:
        if fmt not in RBITS_WIDTH:
            raise ValueError(f"width: no cvt.rs width known for format {fmt!r}; pass width= (1..32)")
        width = RBITS_WIDTH[fmt]
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
        raise TypeError(f"width: expected an int, got {type(width).__name__}")
    return int(width)


__all__ = ["RBITS_WIDTH", "RHT_SIGNS", "rht16", "sr_width", "stochastic_round"]
