"""nst_jax: neural style transfer (Gatys, Ecker & Bethge) in JAX.

The public API: pure VGG features and costs, the weights loader, and the optimiser.
Names are loaded on first use (PEP 562), so ``import nst_jax`` (and the command line's
start) imports no JAX; importing never starts a JAX backend either way.
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it
_EXPORTS = {
    "Config": "config",
    "Progress": "engine", "iterate": "engine", "stylize": "engine",
    "stylize_grid": "grid",
    "Layout": "layout",
    "content_cost": "losses", "gram_matrix": "losses", "guided_gram_matrix": "losses",
    "layer_style_cost": "losses", "Guides": "guides",
    "style_cost": "losses", "style_target": "losses", "total_cost": "losses",
    "total_variation": "losses",
    "compute_targets": "problem", "objective": "problem",
    "LoopState": "step", "init_loop_state": "step", "make_optimizer": "step", "make_run": "step",
    "make_step": "step",
    "Preprocessing": "vgg", "deprocess": "vgg", "preprocess": "vgg", "vgg_features": "vgg",
    "WeightsError": "weights", "fetch_weights": "weights", "load_weights": "weights",
}

try:
    __version__ = _metadata.version("nst-jax")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"nst_jax.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from nst_jax.config import Config
    from nst_jax.engine import Progress, iterate, stylize
    from nst_jax.grid import stylize_grid
    from nst_jax.guides import Guides
    from nst_jax.layout import Layout
    from nst_jax.losses import (
        content_cost,
        gram_matrix,
        guided_gram_matrix,
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

__all__ = [
    "Config",
    "Guides",
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
    "guided_gram_matrix",
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
