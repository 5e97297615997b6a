"""[pure + driver] Optimise one G per point of a grid of loss weights in one program.

``stylize_grid`` builds the Cartesian product of the requested axes (``alpha``,
``beta``, ``tv_weight``, ``style_weights``: every scalar of :class:`Config` that enters
the cost), stacks the per-point configs into one batched :class:`Config` and runs
``jax.vmap`` of the fused run loop over it. Everything that does not depend on the
grid point is shared: the VGG params, and the targets (content activations and style
Grams), which are computed once, outside the vmapped loop.

Devices: the grid axis is sharded over every device (``jax.sharding.Mesh`` with one
axis ``"grid"``, ``NamedSharding(mesh, P("grid"))`` on G, the optimizer state and the
loss weights; params and targets replicated). A grid that does not divide evenly is
padded (with copies of its last point) and trimmed. On several hosts, call
``jax.distributed.initialize()`` first in every process: ``jax.devices()`` then spans
all hosts and the same code shards over all of them.

Memory grows linearly in the number of points held at once and in the pixel count:
each point holds G, the optimizer state (Adam: 3 images; L-BFGS: 2 * history + 3
images) and its own VGG activations for the backward pass, which dominate (roughly
the single-run memory, ~255 MB for VGG16 at 256 px). ``chunk_points=K`` runs K points
at a time to bound it.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.optimize import (
    averaged,
    compute_targets,
    init_image,
    init_loop_state,
    make_optimizer,
    make_run_fn,
    network_inputs,
    objective,
    output_image,
    to_variable,
)

Array = jax.Array

#: Config fields that may be swept (pytree leaves of Config).
AXES = ("alpha", "beta", "tv_weight", "style_weights")


@dataclasses.dataclass
class GridResult:
    """What :func:`stylize_grid` returns; arrays are indexed by grid point."""

    points: list[dict[str, Any]]   # the coordinates of each point, in order
    shape: tuple[int, ...]         # the grid's shape (one entry per swept axis)
    axes: tuple[str, ...]          # the swept axes, in order
    images: np.ndarray             # (n_points, H, W, 3) float32 in [0, 1]
    history: np.ndarray            # (n_points, steps): J before each step (NaN after a stop)
    costs: dict[str, np.ndarray]   # final unweighted terms, (n_points,) each
    ok: np.ndarray                 # (n_points,) False where a non-finite cost stopped a point
    compile_s: float
    run_s: float
    sharding: Any = None           # the sharding of the images on device (last chunk)


def to_host(x: Array) -> np.ndarray:
    """``x`` as one NumPy array on every process: ``np.asarray`` when this process holds
    all of it, else ``multihost_utils.process_allgather`` (``x`` spans several hosts)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def grid_points(axes: dict[str, Sequence[Any]]) -> tuple[list[dict[str, Any]], tuple[int, ...]]:
    """Cartesian product of ``{axis: values}`` in row-major order (first axis slowest)."""
    for name, values in axes.items():
        if name not in AXES:
            raise ValueError(f"grid axis {name!r}: expected one of {AXES}")
        if len(values) == 0:
            raise ValueError(f"grid axis {name!r}: expected at least one value")
    names = list(axes)
    pts = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return pts, tuple(len(v) for v in axes.values())


def stack_configs(config: Config, points: Sequence[dict[str, Any]]) -> Config:
    """One :class:`Config` whose traced leaves have a leading grid axis ``(n_points,)``."""
    configs = []
    for pt in points:
        pt = dict(pt)
        if "style_weights" in pt:
            sw = tuple(float(v) for v in pt["style_weights"])
            if len(sw) != len(config.style_layers):
                raise ValueError(f"style_weights: expected {len(config.style_layers)} values "
                                 f"per point, got {len(sw)}")
            pt["style_weights"] = sw
        for k, v in pt.items():
            if k != "style_weights" and not float(v) >= 0:
                raise ValueError(f"grid axis {k!r}: expected values >= 0, got {v}")
        configs.append(config.replace(**{k: (v if k == "style_weights" else float(v))
                                         for k, v in pt.items()}))
    return jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *configs)


def stylize_grid(
    content_rgb: Array,
    style_rgb: Array | Sequence[Array],
    params: vgg.Params,
    spec: vgg.Preprocessing,
    *,
    config: Config = Config(),
    alphas: Sequence[float] | None = None,
    betas: Sequence[float] | None = None,
    key: Array | None = None,
    per_point_seeds: bool = False,
    chunk_points: int | None = None,
    devices: Sequence[Any] | None = None,
    style_blend: Sequence[float] | None = None,
    callback: Callable[[int, int], Any] | None = None,
    **other_axes: Sequence[Any],
) -> GridResult:
    """Optimise G for every point of the grid ``alphas x betas x other_axes``.

    Args:
      content_rgb, style_rgb, params, spec: as for :func:`nst_jax.stylize`.
      config: settings shared by all points (the swept fields are overridden).
      alphas, betas: values of alpha and beta (default: the config's, a 1-point axis).
      key: ``jax.random.key`` of the initial noise (default ``key(0)``).
      per_point_seeds: give each point its own noise (split from ``key``); by default
        every point starts from the same image, so differences come from the weights.
      chunk_points: run at most this many points at once (bounds memory).
      devices: devices to shard the grid axis over (default: all of ``jax.devices()``).
      callback: called as ``callback(steps_done, total_steps)`` after each compiled call.
      **other_axes: ``tv_weight=[...]`` or ``style_weights=[(w1, ..., w5), ...]``.

    Returns:
      A :class:`GridResult`.
    """
    config = config.validate(vgg.arch_of(params))
    axes: dict[str, Sequence[Any]] = {
        "alpha": list(alphas) if alphas is not None else [config.alpha],
        "beta": list(betas) if betas is not None else [config.beta],
        **{k: list(v) for k, v in other_axes.items()},
    }
    points, shape = grid_points(axes)
    stacked = stack_configs(config, points)
    n = len(points)
    content_rgb = jnp.asarray(content_rgb, jnp.float32)
    key = jax.random.key(0) if key is None else key
    styles = [style_rgb] if hasattr(style_rgb, "ndim") else list(style_rgb)
    c_net, s_net = network_inputs(content_rgb, styles, config)
    targets = compute_targets(params, spec, c_net, s_net, config, style_blend)
    tx = make_optimizer(config)

    def start(k: Array) -> Array:
        return to_variable(init_image(content_rgb, config, key=k), config)

    if per_point_seeds:
        G0 = jax.vmap(start)(jax.random.split(key, n))
    else:
        x0 = start(key)
        G0 = jnp.broadcast_to(x0, (n, *x0.shape))

    devices = list(devices) if devices is not None else jax.devices()
    mesh = Mesh(np.asarray(devices), ("grid",))
    shard, repl = NamedSharding(mesh, P("grid")), NamedSharding(mesh, P())
    per_call = min(config.report_every, config.iterations)
    vrun = jax.jit(
        jax.vmap(make_run_fn(tx, spec, per_call), in_axes=(0, 0, None, None, 0, None)),
        donate_argnums=(0, 1),
    )
    def _measure(X, ls, p, t, c):
        Xr = averaged(X, ls, c)
        return output_image(Xr, content_rgb, c), objective(Xr, p, t, c, spec)[1]

    measure = jax.jit(jax.vmap(_measure, in_axes=(0, 0, None, None, 0)))
    params_r = jax.device_put(params, repl)
    targets_r = jax.device_put(targets, repl)

    k = n if chunk_points is None else max(1, int(chunk_points))
    k = -(-k // len(devices)) * len(devices)  # round up to a multiple of the device count
    images, hists, costs, oks = [], [], [], []
    compile_s = run_s = 0.0
    total = config.iterations * (-(-n // k))
    done_all = 0
    for start in range(0, n, k):
        idx = np.arange(start, min(start + k, n))
        pad = np.concatenate([idx, np.full(k - len(idx), idx[-1])]).astype(np.int32)
        G = jax.device_put(jnp.take(G0, pad, axis=0), shard)
        cfg = jax.device_put(jax.tree.map(lambda x, p=pad: jnp.take(x, p, axis=0), stacked), shard)
        state = jax.device_put(jax.vmap(lambda g: init_loop_state(tx, g, config))(G), shard)
        hist = []
        ok = np.ones(k, bool)
        done = 0
        while done < config.iterations:
            m = min(per_call, config.iterations - done)
            t0 = time.perf_counter()
            G, state, c, _, _, okc = vrun(G, state, params_r, targets_r, cfg, jnp.int32(m))
            c = to_host(c)[:, :m]  # host sync once per call
            dt = time.perf_counter() - t0
            if start == 0 and done == 0:
                compile_s = dt
            else:
                run_s += dt
            hist.append(c)
            ok &= to_host(okc)
            done += m
            done_all += m
            if callback is not None:
                callback(done_all, total)
        out_img, final = measure(G, state, params_r, targets_r, cfg)
        keep = slice(0, len(idx))
        images.append(to_host(out_img)[keep])
        hists.append(np.concatenate(hist, axis=1)[keep])
        costs.append({name: to_host(v)[keep] for name, v in final.items()})
        oks.append(ok[keep])
        last_sharding = out_img.sharding
    result = GridResult(
        points=points, shape=shape, axes=tuple(axes), images=np.concatenate(images),
        history=np.concatenate(hists),
        costs={name: np.concatenate([c[name] for c in costs]) for name in costs[0]},
        ok=np.concatenate(oks), compile_s=compile_s, run_s=run_s, sharding=last_sharding,
    )
    return result
