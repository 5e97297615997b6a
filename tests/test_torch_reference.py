"""nst_jax's cost and gradient against the independent PyTorch reference of
benchmarks/bench_torch.py (skipped where torch is not installed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import ROOT, rand_image

torch = pytest.importorskip("torch")
sys.path.insert(0, str(ROOT))

from benchmarks.bench_torch import MAX_REL_COST, MAX_REL_GRAD, cross_check  # noqa: E402
from nst_jax import vgg  # noqa: E402
from nst_jax.config import Config  # noqa: E402


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_cost_and_gradient_match_pytorch(params16, params19, arch):
    params = params16 if arch == "vgg16" else params19
    cfg = Config().validate(arch)
    C, S, G0 = rand_image(32, 32, 1), rand_image(32, 32, 2), rand_image(32, 32, 3)
    rel_j, rel_g = cross_check(torch, {k: {kk: np.asarray(vv) for kk, vv in v.items()}
                                       for k, v in params.items()}, vgg.CAFFE, C, S, cfg, G0)
    assert rel_j < MAX_REL_COST and rel_g < MAX_REL_GRAD
