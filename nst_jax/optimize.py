"""The optimiser's public names in one place (kept for existing imports).

The code lives in three modules, one concern each:

- :mod:`nst_jax.problem` [pure]: what the network sees, the targets, ``J(G)``;
- :mod:`nst_jax.step` [pure]: ``make_step`` for any optax transformation, the fused loop;
- :mod:`nst_jax.engine` [host]: the run loop (chunks, progress, scales, resume), ``stylize``.
"""

from nst_jax.engine import Progress, check_sizes, iterate, resize, scale_sizes, stylize
from nst_jax.problem import (
    box_penalty,
    compute_targets,
    evaluate,
    init_image,
    network_image,
    network_inputs,
    objective,
    output_image,
    precision_scope,
    to_variable,
    vgg_features_rgb,
)
from nst_jax.step import (
    LoopState,
    StepInfo,
    averaged,
    fresh_state,
    init_loop_state,
    make_optimizer,
    make_run,
    make_run_fn,
    make_step,
)

__all__ = [
    "LoopState", "Progress", "StepInfo", "averaged", "box_penalty", "check_sizes",
    "compute_targets", "evaluate", "fresh_state", "init_image", "init_loop_state", "iterate",
    "make_optimizer", "make_run", "make_run_fn", "make_step", "network_image", "network_inputs",
    "objective", "output_image", "precision_scope", "resize", "scale_sizes", "stylize",
    "to_variable", "vgg_features_rgb",
]
