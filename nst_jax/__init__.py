"""nst_jax: neural style transfer (Gatys, Ecker & Bethge) in JAX.

The public API: pure VGG features and costs, the weights loader, and the optimiser.
"""

from importlib import metadata as _metadata

from nst_jax.config import Config
from nst_jax.losses import (
    content_cost,
    gram_matrix,
    layer_style_cost,
    style_cost,
    style_target,
    total_cost,
    total_variation,
)
from nst_jax.optimize import compute_targets, iterate, make_run, make_step, objective, stylize
from nst_jax.vgg import Preprocessing, deprocess, preprocess, vgg_features
from nst_jax.weights import WeightsError, fetch_weights, load_weights

try:
    __version__ = _metadata.version("nst-jax")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Config",
    "Preprocessing",
    "WeightsError",
    "__version__",
    "compute_targets",
    "content_cost",
    "deprocess",
    "fetch_weights",
    "gram_matrix",
    "iterate",
    "layer_style_cost",
    "load_weights",
    "make_run",
    "make_step",
    "objective",
    "preprocess",
    "style_cost",
    "style_target",
    "stylize",
    "total_cost",
    "total_variation",
    "vgg_features",
]
