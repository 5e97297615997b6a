"""[pure step + a thin driver] Training a transformation network on the package's own costs.

The loss of a batch of photos ``C_b`` with style indices ``s_b`` is the mean over the
batch of :func:`nst_jax.problem.objective` at the network's output, with ``C_b``'s
content target and style ``s_b``'s targets (Johnson et al. 2016, eq. 1-3, with the
costs, normalisation and layer weights of ``config``):

    L(theta) = (1 / B) sum_b J(f_theta(C_b; s_b); C_b, S_{s_b})

There is no second copy of any cost: ``objective`` is the one every optimisation uses,
so ``style_loss`` (``gram``, ``meancov``, ``w2``), ``normalization``, the layer weights
and ``tv_weight`` all carry over. The batch is ``jax.vmap`` of one photo's loss; optax
does the update (Adam by default, any ``GradientTransformation``) inside one jitted
step that donates the state.

Data parallelism: the photos are laid out with :class:`nst_jax.layout.Layout` (the
batch axis sharded over the devices, ``P("points")``; the network's parameters, the
optimizer state, VGG and the style targets replicated); XLA's partitioner inserts the
gradient all-reduce. Over several hosts (after ``jax.distributed.initialize``) every
process holds its slice of the batch (:func:`global_batch`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from nst_jax import problem, vgg
from nst_jax.config import Config
from nst_jax.layout import Layout
from nst_jax.models import johnson as J

Array = jax.Array


@struct.dataclass
class TrainState:
    """The network's parameters, the optimizer state and the number of steps taken."""

    params: J.Params
    opt_state: Any
    step: Array


def init_state(params: J.Params, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))


def check_config(config: Config) -> None:
    """Refuse settings a network's training does not support."""
    if config.preserve_color != "none" or config.original_colors:
        raise ValueError(f"preserve_color: a trained network learns RGB (got {config.preserve_color!r}); "
                         "apply colour preservation to its output instead")
    if config.tile:
        raise ValueError(f"tile: training runs on whole crops (got tile={config.tile})")
    if config.style_loss in ("swd", "mrf"):  # they keep the style's features, per style and size
        raise ValueError(f"style_loss {config.style_loss!r}: a network is trained with gram, meancov, "
                         "w2 or hist; swd and mrf are for stylize/texture runs")


def style_targets(vgg_params: vgg.Params, spec: vgg.Preprocessing, styles: Sequence[Array],
                  config: Config) -> Any:
    """Each style's targets (:func:`nst_jax.problem.compute_targets`), stacked on a leading
    axis of styles ``(N, ...)``."""
    per = [problem.compute_targets(vgg_params, spec, s, [s], config)["style"] for s in styles]
    return jax.tree.map(lambda *t: jnp.stack(t), *per)


def photo_loss(net_params: J.Params, photo: Array, style: Array, vgg_params: vgg.Params,
               targets: Any, config: Config, spec: vgg.Preprocessing,
               arch: J.Arch) -> tuple[Array, dict[str, Array]]:
    """``J(f(C; s); C, S_s)`` for one photo ``(H, W, 3)`` and style index ``s`` (int32 scalar)."""
    y = J.forward(net_params, photo, jax.nn.one_hot(style, arch.n_styles, dtype=jnp.float32), arch)
    content = jax.lax.stop_gradient(problem.content_target(vgg_params, spec, photo, config))
    st = jax.tree.map(lambda t: t[style], targets)
    return problem.objective(y, vgg_params, {"content": content, "style": st}, config, spec)


def batch_loss(net_params: J.Params, photos: Array, styles: Array, vgg_params: vgg.Params,
               targets: Any, config: Config, spec: vgg.Preprocessing,
               arch: J.Arch) -> tuple[Array, dict[str, Array]]:
    """The mean of :func:`photo_loss` over ``photos (B, H, W, 3)`` and ``styles (B,)``."""
    J_b, terms = jax.vmap(photo_loss, in_axes=(None, 0, 0, None, None, None, None, None))(
        net_params, photos, styles, vgg_params, targets, config, spec, arch)
    return jnp.mean(J_b), jax.tree.map(jnp.mean, terms)


def train_step_fn(tx: optax.GradientTransformation, spec: vgg.Preprocessing,
                  arch: J.Arch) -> Callable:
    """The pure step ``(state, photos, styles, vgg_params, targets, config) -> (state, terms)``."""
    def step(state: TrainState, photos: Array, styles: Array, vgg_params: vgg.Params,
             targets: Any, config: Config) -> tuple[TrainState, dict[str, Array]]:
        (_, terms), g = jax.value_and_grad(batch_loss, has_aux=True)(
            state.params, photos, styles, vgg_params, targets, config, spec, arch)
        updates, opt_state = tx.update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), terms

    return step


@functools.lru_cache(maxsize=8)
def make_train_step(tx: optax.GradientTransformation, spec: vgg.Preprocessing,
                    arch: J.Arch) -> Callable:
    """:func:`train_step_fn` jitted once per optimizer, preprocessing and architecture
    (the state donated)."""
    return jax.jit(train_step_fn(tx, spec, arch), donate_argnums=(0,))


def global_batch(layout: Layout, local: np.ndarray) -> Array:
    """This process's rows of the global batch as one array sharded over ``layout``'s
    devices (``jax.make_array_from_process_local_data``); one process: its whole batch."""
    if not layout.batched:
        return jnp.asarray(local)
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    sharding = NamedSharding(layout._mesh(), P("points"))
    return jax.make_array_from_process_local_data(sharding, np.ascontiguousarray(local))


def _scalar(x: Array) -> float:
    """A replicated scalar on the host (over several hosts no array is fully addressable,
    but each process holds a copy of a replicated one)."""
    return float(x.addressable_data(0)) if hasattr(x, "addressable_data") else float(x)


def iterate_training(state: TrainState, batches: Iterator[tuple[np.ndarray, np.ndarray]], *,
                     tx: optax.GradientTransformation, vgg_params: vgg.Params,
                     spec: vgg.Preprocessing, targets: Any, config: Config, arch: J.Arch,
                     layout: Layout, steps: int, report_every: int = 10,
                     stop: Callable[[], bool] | None = None,
                     ) -> Iterator[tuple[TrainState, dict[str, float]]]:
    """Train until ``state.step == steps``; yield ``(state, mean terms)`` every
    ``report_every`` steps, at the end, and after the first step at which ``stop()``
    is true (so a checkpoint can be written at once). The host reads the costs only then.

    ``batches`` yields this process's ``(photos (b, H, W, 3), style indices (b,))``
    for consecutive steps, starting at ``state.step``.
    """
    check_config(config)
    step = make_train_step(tx, spec, arch)
    vgg_params, targets = layout.share(vgg_params), layout.share(targets)
    state = layout.share(jax.tree.map(jnp.copy, state))  # the step donates it: keep the caller's
    done = int(state.step)
    acc: list[dict[str, Array]] = []
    while done < steps:
        photos, styles = next(batches)
        state, terms = step(state, global_batch(layout, photos), global_batch(layout, styles),
                            vgg_params, targets, config)
        acc.append(terms)
        done += 1
        if done % report_every == 0 or done == steps or (stop is not None and stop()):
            mean = {k: float(np.mean([_scalar(t[k]) for t in acc])) for k in acc[0]}
            acc = []
            yield state, mean


__all__ = ["TrainState", "batch_loss", "check_config", "global_batch", "init_state",
           "iterate_training", "make_train_step", "photo_loss", "style_targets", "train_step_fn"]
