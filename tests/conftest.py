"""Shared fixtures: strict numerics and tiny synthetic weights (no network, no files)."""

from __future__ import annotations

import os
from pathlib import Path

# The command-line tools' XLA:CPU setting (nst_jax.cli.CPU_XLA_FLAG), before JAX starts.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_enable_concurrency_optimized_scheduler=false").strip()

import jax
import numpy as np
import pytest

from nst_jax import vgg

jax.config.update("jax_numpy_rank_promotion", "raise")

ROOT = Path(__file__).resolve().parents[1]
REAL_VGG16 = ROOT / "weights" / "vgg16.h5"
TINY_CHANNELS = (4, 8, 8, 16, 16)


def tiny_params(arch: str = "vgg16", seed: int = 0) -> dict:
    return vgg.synthetic_params(arch, TINY_CHANNELS, key=jax.random.key(seed))


@pytest.fixture(scope="session")
def params16() -> dict:
    return tiny_params("vgg16")


@pytest.fixture(scope="session")
def params19() -> dict:
    return tiny_params("vgg19", seed=1)


@pytest.fixture(scope="session")
def real16():
    if not REAL_VGG16.exists():
        pytest.skip("weights/vgg16.h5 absent: run python scripts/fetch_weights.py")
    from nst_jax.weights import load_weights

    return load_weights(REAL_VGG16)


def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (h, w, 3)).astype(np.float32)
