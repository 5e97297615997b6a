"""Shared fixtures: strict numerics and tiny synthetic weights (no network, no files)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from nst_jax import vgg
from nst_jax import weights as W
from nst_jax.cli.common import default_xla_flags

# The command-line tools' XLA:CPU setting (gated on the jaxlib version), read when the
# backend starts (importing jax and nst_jax starts none).
default_xla_flags()

jax.config.update("jax_numpy_rank_promotion", "raise")

CACHE_ENV = "NST_TEST_XLA_CACHE"


def pytest_configure(config):
    """One persistent XLA compilation cache per test run, shared by the xdist workers:
    tests that build the same program (the same HLO: the same tiny network at the same
    sizes, from another closure) compile it once. The controller (or the only process)
    makes a fresh folder, so every run costs what a fresh clone's does, and removes it
    at the end. ``NST_TEST_XLA_CACHE=DIR`` uses (and keeps) DIR; ``=0`` turns it off.

    A size limit makes JAX lock the folder (``filelock``) around every read and write:
    without one it writes entries in place, and a worker that read an entry another was
    still writing crashed deserialising it (a segfault, seen once in a full run)."""
    if "PYTEST_XDIST_WORKER" not in os.environ and not os.environ.get(CACHE_ENV):
        config._nst_cache = tempfile.mkdtemp(prefix="nst_jax-test-xla-cache-")
        os.environ[CACHE_ENV] = config._nst_cache  # the workers inherit it
    d = os.environ.get(CACHE_ENV)
    if d and d != "0":
        jax.config.update("jax_compilation_cache_dir", d)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        jax.config.update("jax_compilation_cache_max_size", 16 * 2**30)  # locked, not evicting


def pytest_unconfigure(config):
    d = getattr(config, "_nst_cache", None)
    if d:
        shutil.rmtree(d, ignore_errors=True)
        os.environ.pop(CACHE_ENV, None)

ROOT = Path(__file__).resolve().parents[1]
REAL_VGG16 = ROOT / "weights" / "vgg16.h5"
TINY_CHANNELS = (4, 8, 8, 16, 16)


def tiny_params(arch: str = "vgg16", seed: int = 0) -> dict:
    """He-initialised weights of the tiny shapes, made with NumPy (no JAX compiles)."""
    return vgg.synthetic_params(arch, TINY_CHANNELS, seed=seed)


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


# ----------------------------------------------------------------------------- CLI runs

FAST = ["--iters", "4", "--report-every", "2", "--beta", "1e-2", "--size", "32"]


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    """A folder with tiny synthetic weights ``tiny.h5`` and two small images."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    params = {n: {"kernel": rng.normal(0, 0.3, k).astype(np.float32),
                  "bias": rng.normal(0, 0.1, b).astype(np.float32)}
              for n, (k, b) in vgg.conv_shapes("vgg16", TINY_CHANNELS).items()}
    W.write_weights(d / "tiny.h5", params, "vgg16", vgg.CAFFE, {"source": "synthetic"})
    for name, seed, size in (("c.png", 1, (48, 40)), ("s.png", 2, (40, 40))):
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), np.uint8)).save(d / name)
    return d


def run(work, *args, out="o.png"):
    """``nst-jax stylize`` in-process on the tiny inputs of :func:`work`."""
    from nst_jax.cli import stylize_main

    argv = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST]
    if out:
        argv += ["-o", str(work / out)]
    return stylize_main([*argv, *args])
