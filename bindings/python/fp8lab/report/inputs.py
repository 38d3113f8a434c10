"""Input distributions for the measurements.

Each returns float32 arrays. The LLM-like activations follow the observation that transformer
activations have a few channels with magnitudes tens to hundreds of times the rest ("massive
activations", Sun et al. 2024, arXiv 2402.17762; LLM.int8(), Dettmers et al. 2022, arXiv
2208.07339): a Gaussian body with a handful of outlier columns along K.
"""
from __future__ import annotations

import numpy as np

DISTRIBUTIONS = ("gaussian", "uniform", "student_t3", "llm_outliers", "uniform_positive")

DESCRIPTIONS = {
    "gaussian": "N(0, 1)",
    "uniform": "U(-1, 1)",
    "student_t3": "Student-t, nu = 3 (heavy tails)",
    "llm_outliers": "activations N(0, 1) with K/512 (at least 2) outlier channels scaled x20..x100; weights N(0, 1)",
    "uniform_positive": "U(0, 1): no cancellation, so truncation errors all push the same way (a worst case)",
}


def sample(dist: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A float32 matrix of the named distribution (weights for llm_outliers are plain Gaussian)."""
    if dist == "gaussian":
        x = rng.standard_normal(shape)
    elif dist == "uniform":
        x = rng.uniform(-1.0, 1.0, shape)
    elif dist == "student_t3":
        x = rng.standard_t(3.0, shape)
    elif dist == "uniform_positive":
        x = rng.uniform(0.0, 1.0, shape)
    elif dist == "llm_outliers":
        x = rng.standard_normal(shape)
        k = shape[1]
        n_out = max(2, k // 512)
        cols = rng.choice(k, size=n_out, replace=False)
        x[:, cols] *= rng.uniform(20.0, 100.0, n_out)
    else:
        raise ValueError(f"dist: {dist!r} is not one of {DISTRIBUTIONS}")
    return x.astype(np.float32)


def operands(dist: str, m: int, n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (m x k) activations of `dist` and B (n x k) weights, DeepGEMM's NT layout."""
    a = sample(dist, (m, k), rng)
    b = sample("gaussian" if dist == "llm_outliers" else dist, (n, k), rng)
    return a, b
