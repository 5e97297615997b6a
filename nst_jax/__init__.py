"""nst_jax: neural style transfer (Gatys, Ecker & Bethge) in JAX.

The public API: pure VGG features and costs, the weights loader, and the optimiser.
"""

from importlib import metadata as _metadata

from nst_jax.config import Config
from nst_jax.engine import Progress, iterate, stylize
from nst_jax.grid import stylize_grid
from nst_jax.layout import Layout
from nst_jax.losses import (
    content_cost,
    gram_matrix,
    layer_style_cost,
    style_cost,
    style_target,
    total_cost,
    total_variation,
)
from nst_jax.problem import compute_targets, objective
from nst_jax.step import LoopState, init_loop_state, make_optimizer, make_run, make_step
from nst_jax.vgg import Preprocessing, deprocess, preprocess, vgg_features
from nst_jax.weights import WeightsError, fetch_weights, load_weights

try:
    __version__ = _metadata.version("nst-jax")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Config",
    "Layout",
    "LoopState",
    "Preprocessing",
    "Progress",
    "WeightsError",
    "__version__",
    "compute_targets",
    "content_cost",
    "deprocess",
    "fetch_weights",
    "gram_matrix",
    "init_loop_state",
    "iterate",
    "layer_style_cost",
    "load_weights",
    "make_optimizer",
    "make_run",
    "make_step",
    "objective",
    "preprocess",
    "style_cost",
    "style_target",
    "stylize",
    "stylize_grid",
    "total_cost",
    "total_variation",
    "vgg_features",
]
