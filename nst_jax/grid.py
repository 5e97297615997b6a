"""[driver] Optimise one G per point of a grid of loss weights in one program.

``stylize_grid`` builds the Cartesian product of the requested axes (``alpha``,
``beta``, ``tv_weight``, ``style_weights``: every scalar of :class:`Config` that enters
the cost), stacks the per-point configs into one batched :class:`Config` and runs
the one engine (:func:`nst_jax.engine.iterate`) with a batched layout: ``jax.vmap`` of
the fused run loop over the points. Everything that does not depend on the grid
point is shared: the VGG params, and the targets (content activations and style
Grams), which are computed once, outside the vmapped loop.

Devices: the grid axis is sharded over every device (``jax.sharding.Mesh`` with one
axis ``"points"``, ``NamedSharding(mesh, P("points"))`` on G, the optimizer state and
the loss weights; params and targets replicated; see :mod:`nst_jax.layout`). A grid
that does not divide evenly is padded (with copies of its last point) and trimmed. On several hosts, call
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
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.engine import iterate
from nst_jax.layout import Layout
from nst_jax.problem import init_image

Array = jax.Array

#: Config fields that may be swept (pytree leaves of Config).
AXES = ("alpha", "beta", "tv_weight", "photo_weight", "style_weights")


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
    tx: Any = None,
    objective: Callable | None = None,
    guides: Any = None,
    resume: dict[str, Any] | None = None,
    on_snapshot: Callable[[dict[str, Any]], Any] | None = None,
    **other_axes: Sequence[Any],
) -> GridResult:
    """Optimise G for every point of the grid ``alphas x betas x other_axes``.

    The points run through the one engine (:func:`nst_jax.engine.iterate`) with a
    batched :class:`~nst_jax.layout.Layout`: coarse-to-fine ``scales``, averaging and
    ``tol`` work as for one image.

    Args:
      content_rgb, style_rgb, params, spec: as for :func:`nst_jax.stylize`.
      config: settings shared by all points (the swept fields are overridden).
      alphas, betas: values of alpha and beta (default: the config's, a 1-point axis).
      key: ``jax.random.key`` of the initial noise (default ``key(0)``).
      per_point_seeds: give each point its own noise (split from ``key``); by default
        every point starts from the same image, so differences come from the weights.
      chunk_points: run at most this many points at once (bounds memory), rounded up
        to a multiple of the device count.
      devices: devices to shard the grid axis over (default: all of ``jax.devices()``).
      callback: called as ``callback(steps_done, total_steps)`` after each compiled call.
      tx, objective: a custom optax transformation / objective (as for ``stylize``).
      guides: regions and masks shared by every point (:class:`nst_jax.guides.Guides`).
      on_snapshot: called after each report with the grid's state ``{"chunk", "finished",
        "engine", "steps"}`` (host arrays: the finished chunks' results and the current
        chunk's :attr:`Progress.snapshot <nst_jax.engine.Progress.snapshot>`); what
        ``resume=`` takes to continue exactly there (:func:`nst_jax.checkpoint.save_grid_checkpoint`
        writes it). Resumed, the grid's images are bitwise those of an uninterrupted run on
        CPU (the same chunks, the same compiled programs).
      resume: a state ``on_snapshot`` was given.
      **other_axes: ``tv_weight=[...]`` or ``style_weights=[(w1, ..., w5), ...]``.

    Returns:
      A :class:`GridResult`.
    """
    config = config.validate(vgg.arch_of(params))
    axes: dict[str, Sequence[Any]] = {"alpha": list(alphas) if alphas is not None else [config.alpha],
                                      "beta": list(betas) if betas is not None else [config.beta],
                                      **{k: list(v) for k, v in other_axes.items()}}
    points, shape = grid_points(axes)
    stacked = stack_configs(config, points)
    n = len(points)
    key = jax.random.key(0) if key is None else key
    content_rgb = jnp.asarray(content_rgb, jnp.float32)
    starts = (jax.vmap(lambda k: init_image(content_rgb, config, key=k))(jax.random.split(key, n))
              if per_point_seeds else None)
    layout = Layout.of(min(chunk_points or n, n), devices)
    k = layout.points
    total = config.iterations * config.scales * (-(-n // k))
    parts: list[dict[str, Any]] = [] if resume is None else list(resume["finished"])
    sharding = None
    for ci, first in enumerate(range(0, n, k)):
        if ci < len(parts):  # finished before the resume
            continue
        idx = np.arange(first, min(first + k, n))
        pad = np.concatenate([idx, np.full(k - len(idx), idx[-1])]).astype(np.int32)
        done_before = sum(int(p["step"]) for p in parts)
        last = None
        for last in iterate(content_rgb, style_rgb, params, spec, config=config, key=key,
                            style_blend=style_blend, init=None if starts is None else starts[pad],
                            tx=tx, objective=objective, layout=layout, guides=guides,
                            point_configs=jax.tree.map(lambda x, p=pad: x[p], stacked),
                            resume=resume["engine"] if resume is not None and ci == resume["chunk"] else None,
                            snapshots=on_snapshot is not None):
            if on_snapshot is not None:
                on_snapshot(_state(ci, done_before, last, parts, len(idx)))
            if callback is not None:
                callback(done_before + last.step, total)
        assert last is not None
        parts.append(_part(last, len(idx)))
        sharding = last.sharding
    return _result(points, shape, tuple(axes), parts, sharding)


def _result(points: list[dict[str, Any]], shape: tuple[int, ...], axes: tuple[str, ...],
            parts: list[dict[str, Any]], sharding: Any) -> GridResult:
    """The :class:`GridResult` of the chunks' results (:func:`_part`), in order."""
    return GridResult(
        points=points, shape=shape, axes=axes,
        images=np.concatenate([p["image"] for p in parts]),
        history=np.concatenate([p["history"] for p in parts]),
        costs={name: np.concatenate([p["costs"][name] for p in parts]) for name in parts[0]["costs"]},
        ok=np.concatenate([p["ok"] for p in parts]),
        compile_s=float(parts[0]["compile_s"]),  # later chunks reuse the compiled programs
        run_s=float(parts[0]["run_s"]) + sum(float(p["compile_s"] + p["run_s"]) for p in parts[1:]),
        sharding=sharding,
    )


def _state(ci: int, done_before: int, last: Any, parts: list[dict[str, Any]], keep: int) -> dict[str, Any]:
    """What ``on_snapshot`` gets after a report of chunk ``ci`` (see :func:`stylize_grid`);
    a finished chunk is stored as a result, so a resume starts at the next one."""
    done = bool(last.finished)
    return {"chunk": ci + done, "steps": done_before + last.step,
            "finished": parts + ([_part(last, keep)] if done else []),
            "engine": None if done else last.snapshot}


def _part(last: Any, keep: int) -> dict[str, Any]:
    """A finished chunk's results on the host, its first ``keep`` points (the rest pad it)."""
    return {"image": np.asarray(last.image)[:keep], "history": np.asarray(last.history)[:keep],
            "costs": {k: np.asarray(v)[:keep] for k, v in last.costs.items()},
            "ok": np.asarray(last.ok)[:keep], "compile_s": float(last.compile_s),
            "run_s": float(last.run_s), "step": int(last.step)}
