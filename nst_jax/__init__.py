"""nst_jax: neural style transfer (Gatys, Ecker & Bethge) in JAX."""

from nst_jax.vgg import deprocess, preprocess, vgg_features
from nst_jax.weights import load_weights

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "deprocess",
    "load_weights",
    "preprocess",
    "vgg_features",
]
