"""[host] The run loop: chunks of the compiled loop, progress events, scales, resume.

Data flow::

    targets = compute_targets(params, spec, C, S, config)        # once per scale
    run     = make_run(tx, spec, chunk)                           # jitted: while_loop of steps
    for progress in iterate(C, S, params, spec, config=..., key=...):
        ...                                                        # the caller prints, saves

The core never prints and never touches files: it yields :class:`Progress` events;
the CLI (or any caller) reports, saves and checkpoints.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nst_jax import swd, vgg
from nst_jax.chunks import Progress, _Scale, _Tally
from nst_jax.config import Config
from nst_jax.guides import Guides
from nst_jax.layout import Layout, trimmed
from nst_jax.problem import init_image, to_variable
from nst_jax.problem import (
    objective as default_objective,
)
from nst_jax.scales import (
    at_scale,
    batch_inputs,
    check_rows,
    check_sizes,
    resize,
    scale_inputs,
    scale_sizes,
    style_sizes,
)
from nst_jax.step import averaged, init_loop_state, make_optimizer

Array = jax.Array

_with_backward_kernels = jax.jit(vgg.with_backward_kernels, static_argnames="winograd")


@functools.lru_cache(maxsize=16)
def _optimizer(optimizer: str, learning_rate: float, lbfgs_history: int,
               lbfgs_linesearch: str) -> optax.GradientTransformation:
    """``config.optimizer``'s transformation, one object per setting (so that the
    compiled-program caches of :mod:`nst_jax.layout` find it again)."""
    return make_optimizer(Config(optimizer=optimizer, learning_rate=learning_rate,
                                 lbfgs_history=lbfgs_history, lbfgs_linesearch=lbfgs_linesearch))


def _config_optimizer(config: Config) -> optax.GradientTransformation:
    return _optimizer(config.optimizer, config.learning_rate, config.lbfgs_history, config.lbfgs_linesearch)


def _restore(resume: dict[str, Any], tx: Any, config: Config, layout: Layout) -> tuple[Array, Any]:
    """X and the loop state of a snapshot, checked against a fresh state's structure."""
    X = jnp.asarray(resume["X"], jnp.float32)
    template = layout.map(lambda x: init_loop_state(tx, x, config), X)
    t_leaves, treedef = jax.tree.flatten(template)
    saved = list(resume["loop_state"])
    # a leaf that is empty here restores nothing (snapshots made before the running
    # average became empty without avg_decay held zeros of X's shape there)
    leaves = [t if np.size(t) == 0 else v for v, t in zip(saved, t_leaves, strict=False)]
    if len(saved) != len(t_leaves) or any(
            np.shape(a) != np.shape(b) for a, b in zip(leaves, t_leaves, strict=True)):
        raise ValueError("resume: the snapshot's optimizer state does not match these "
                         "settings (optimizer, image size or tol_window differ)")
    return X, jax.tree.unflatten(treedef, [jnp.array(v, dtype=t.dtype)
                                           for v, t in zip(leaves, t_leaves, strict=True)])


def _fresh(si: int, hw: tuple[int, int], Xr: Any, c_s: Array, init: Any, key: Array,
           config: Config, layout: Layout) -> Array:
    """X at the start of scale ``si``: the previous result upsampled, else the start."""
    if si > 0:  # coarse-to-fine: the previous scale's result, upsampled
        return layout.map(lambda x: resize(x, hw), Xr)
    if init is not None:
        return layout.map(lambda x: to_variable(resize(jnp.asarray(x, jnp.float32), hw), config), init)
    if layout.per_point:  # each photo's own start (the same noise for all)
        return layout.map(lambda c: to_variable(init_image(c, config, key=key), config), c_s)
    x0 = to_variable(init_image(c_s, config, key=key), config)
    return jnp.broadcast_to(x0, (layout.points, *x0.shape)) if layout.batched else x0


def iterate(
    content_rgb: Array,
    style_rgb: Array | Sequence[Array],
    params: vgg.Params,
    spec: vgg.Preprocessing,
    *,
    config: Config = Config(),
    key: Array | None = None,
    style_blend: Sequence[float] | None = None,
    init: Array | None = None,
    resume: dict[str, Any] | None = None,
    snapshots: bool = False,
    tx: optax.GradientTransformation | None = None,
    objective: Callable | None = None,
    layout: Layout = Layout(),
    point_configs: Config | None = None,
    guides: Guides | None = None,
    extra_targets: dict[str, Any] | None = None,
) -> Iterator[Progress]:
    """THE run loop: yields a :class:`Progress` every ``config.report_every`` steps.

    Every driver (one image, a grid of loss weights, a batch) runs through here; they
    differ only in ``layout`` (:class:`~nst_jax.layout.Layout`): one image, or
    ``layout.points`` images along a leading axis sharded over devices, each with its
    own loss weights from ``point_configs`` (``config``'s structure, leaves ``(points,)``)
    and its own start ``init`` (``(points, H, W, 3)`` RGB; default: the same start).

    The loop syncs with the host only between chunks. Stop early by leaving the loop;
    the last yielded ``Progress.image`` is complete. A report's costs are the next
    chunk's first evaluation where that is the same cost at the same image (no forward
    pass of their own: :meth:`nst_jax.chunks._Scale.chunks`), so such a report arrives one chunk later.
    With ``snapshots=True`` (a host copy of X and the loop state at each report),
    ``Progress.snapshot`` passed back as ``resume=`` continues exactly where it was:
    same chunks, same compiled programs, so the final image is bitwise that of an
    uninterrupted run on CPU. Coarse-to-fine scales, averaging and ``tol`` work in
    every layout.

    ``tx``: any optax transformation (default: ``config.optimizer``'s; line-search
    ones, whose state holds ``value``, get the L-BFGS treatment: box penalty, single
    steps). ``objective``: a custom objective with :func:`nst_jax.problem.objective`'s
    signature. Scales, progress, checkpoints and ``tol`` work with both.

    ``guides``: regions, style masks, a content-strength map (:class:`~nst_jax.guides.Guides`).

    A batch of photos (``layout.per_point``): ``content_rgb`` is ``(points, H, W, 3)``
    and every point optimises its own photo (its own content target and start).
    ``extra_targets``: arrays added to the targets a custom ``objective`` reads (one
    image, one scale: e.g. the video driver's warped previous frame).
    """
    config = config.validate(vgg.arch_of(params))
    content_rgb = jnp.asarray(content_rgb, jnp.float32)
    styles = [style_rgb] if hasattr(style_rgb, "ndim") else list(style_rgb)
    sizes = _check_inputs(content_rgb, styles, layout, guides, extra_targets, vgg.arch_of(params),
                          config)
    params = _with_backward_kernels(params, winograd=layout.winograd(config.precision))  # once
    key = jax.random.key(0) if key is None else key
    chunk = min(config.report_every, config.iterations)
    tx = tx if tx is not None else _config_optimizer(config)
    objective = objective or default_objective
    _check_layout(layout, point_configs, sizes, vgg.arch_of(params), config)
    cfg = layout.split(point_configs) if layout.batched else config
    params_d = layout.share(params)
    t = _Tally()
    start_scale, start_step, key = t.resume(resume, key)
    Xr = None
    for si in range(start_scale, len(sizes)):
        config_s, cfg_s = at_scale(config, sizes[si]), at_scale(cfg, sizes[si])
        height, stored = sizes[si][0], layout.padded(sizes[si][0])
        progs = layout.programs(tx, spec, chunk,
                                trimmed(objective, height) if stored != height else objective)
        c_s, targets = _placed_inputs(content_rgb, styles, sizes[si], config_s, params, spec,
                                      style_blend, guides, extra_targets, layout, swd.seed_key(key, si))
        X, ls, done = _scale_state(resume if si == start_scale else None, start_step, tx, config, layout,
                                   stored, partial(_fresh, si, sizes[si], Xr, c_s, init, key, config, layout))
        # the costs of a chunk's last image come from the next chunk's first evaluation
        # (no forward pass of their own) where that evaluates the same cost at the same image
        defer = config.avg_decay == 0 and "swd_key" not in targets
        scale = _Scale(progs, params_d, targets, cfg_s, _pad_rows(c_s, stored, layout), si, height,
                       si == len(sizes) - 1, key if snapshots else None, defer, not layout.batched)
        X, ls, stopped = yield from scale.chunks(t, X, ls, done, chunk, config.iterations)
        if stopped:
            return
        # the result of this scale, the start of the next one
        Xr = layout.map(lambda x, s: averaged(x, s, config), X, ls)[..., :height, :, :]


def _scale_state(resume: dict[str, Any] | None, start_step: int, tx: optax.GradientTransformation,
                 config: Config, layout: Layout, stored: int, fresh: Callable[[], Array]
                 ) -> tuple[Array, Any, int]:
    """``(X, loop state, steps done)`` at the start of a scale, split over the layout's
    devices: restored from ``resume`` (the scale a run was interrupted in), else from
    ``fresh()``, the scale's start image, padded to ``stored`` rows."""
    if resume is not None:
        (X, ls), done = _restore(resume, tx, config, layout), start_step
    else:
        X = _pad_rows(fresh(), stored, layout)
        ls, done = layout.map(lambda x: init_loop_state(tx, x, config), X), 0
    return (*layout.split((X, ls)), done)


def _check_inputs(content_rgb: Array, styles: list[Array], layout: Layout, guides: Guides | None,
                  extra_targets: Any, arch: str, config: Config) -> list[tuple[int, int]]:
    """Refuse inputs :func:`iterate` cannot run (``ValueError``); the scales' sizes."""
    shape = content_rgb.shape[1:] if layout.per_point else content_rgb.shape
    if len(shape) != 3 or shape[-1] != 3 or (
            layout.per_point and content_rgb.shape[0] != layout.points):
        want = f"({layout.points}, H, W, 3)" if layout.per_point else "(H, W, 3)"
        raise ValueError(f"content_rgb: expected shape {want}, got {content_rgb.shape}")
    if layout.per_point and guides is not None:
        raise ValueError("guides: regions and masks belong to one photo, not to a batch")
    check_sizes(shape, [s.shape for s in styles], arch, config)
    sizes = scale_sizes(*shape[:2], config)
    if extra_targets is not None and (len(sizes) > 1 or layout.batched):
        raise ValueError("extra_targets: one image at one scale only")
    return sizes


def _placed_inputs(content_rgb: Array, styles: list[Array], hw: tuple[int, int], config: Config,
                   params: vgg.Params, spec: vgg.Preprocessing, style_blend: Any,
                   guides: Guides | None, extra_targets: Any, layout: Layout,
                   swd_key: Array) -> tuple[Array, Any]:
    """C (or the batch of photos) at this scale and the targets, placed on the devices;
    ``swd``'s directions come from ``swd_key`` (the run's seed and the scale)."""
    if layout.per_point:
        c_s, targets = batch_inputs(content_rgb, styles, hw, config, params, spec, style_blend)
        if "swd_key" in targets:  # one key per photo: the same directions for all
            targets["swd_key"] = jnp.broadcast_to(swd_key, targets["swd_key"].shape)
        return layout.split((c_s, targets))
    c_s, targets = scale_inputs(content_rgb, styles, hw, config, params, spec, style_blend, guides)
    if "swd_key" in targets:
        targets["swd_key"] = swd_key
    return c_s, layout.share({**targets, **(extra_targets or {})})


def _check_layout(layout: Layout, point_configs: Config | None, sizes: Sequence[tuple[int, int]],
                  arch: str, config: Config) -> None:
    """Refuse what a layout cannot run (``ValueError``)."""
    if layout.batched and point_configs is None:
        raise ValueError("a batched layout needs point_configs (the per-point loss weights)")
    if layout.rows:
        check_rows(sizes, len(layout.devices), arch, config)
        if config.tile:
            raise ValueError("tile: a tiled image is spread over devices by its tiles "
                             "(Layout.over_tiles), not split by rows (XLA cannot partition the "
                             "tile scan's dynamic windows by rows)")
    if layout.tiles and not config.tile:
        raise ValueError("layout: Layout.over_tiles spreads the tiles of a tiled run; set "
                         "config.tile (or split the image by rows: Layout.by_rows)")


def _devices_layout(devices: Sequence[Any] | None, config: Config) -> Layout:
    """One device, or ``devices``: by tiles when ``config.tile``, else by rows."""
    if devices is None or len(devices) < 2:
        return Layout()
    return Layout.over_tiles(devices) if config.tile else Layout.by_rows(devices)


def _pad_rows(x: Array, height: int, layout: Layout) -> Array:
    """``x (H, W, C)`` with its last row repeated to ``height`` rows (rows layouts)."""
    if not layout.rows or x.shape[0] == height:
        return x
    return jnp.pad(x, ((0, height - x.shape[0]), (0, 0), (0, 0)), mode="edge")


def stylize(
    content_rgb: Array,
    style_rgb: Array | Sequence[Array],
    params: vgg.Params,
    spec: vgg.Preprocessing,
    *,
    config: Config = Config(),
    key: Array | None = None,
    style_blend: Sequence[float] | None = None,
    callback: Callable[[Progress], Any] | None = None,
    tx: optax.GradientTransformation | None = None,
    objective: Callable | None = None,
    devices: Sequence[Any] | None = None,
    guides: Guides | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Style-transfer ``content_rgb`` in the style of ``style_rgb``.

    Args:
      content_rgb: C, ``(H, W, 3)`` RGB in [0, 1]; G has its size.
      style_rgb: S, ``(H', W', 3)``, or a sequence of style images (blended).
      params, spec: from :func:`nst_jax.load_weights`.
      config: see :class:`nst_jax.Config`.
      key: ``jax.random.key`` for the initial noise (default ``key(0)``).
      style_blend: weights of several style images (default: equal).
      callback: called with each :class:`Progress`; return ``True`` to stop early.
      tx: any optax transformation (default: the one ``config.optimizer`` names).
      objective: a custom ``(X, params, targets, config, spec) -> (J, terms)``
        (default :func:`nst_jax.problem.objective`).
      devices: split the image along its height over these devices
        (:meth:`Layout.by_rows`; every device of every host after
        ``jax.distributed.initialize``: ``jax.devices()``), or with ``config.tile``
        spread its tiles over them (:meth:`Layout.over_tiles`); default: one device.
      guides: where each style goes, which part of each style image to learn from,
        and a content-strength map (:class:`nst_jax.guides.Guides`, Gatys et al. 2017).

    Returns:
      ``(image (H, W, 3) float32 in [0, 1], history)``; ``history`` has ``"total"`` (J
      before each step), the final ``"costs"``, ``"evals"``, ``"steps"``,
      ``"converged"`` and timings.

    Example:
      >>> params, spec = load_weights("weights/vgg16.h5")
      >>> image, hist = stylize(content, style, params, spec, config=Config(iterations=200))
    """
    last = None
    for last in iterate(content_rgb, style_rgb, params, spec, config=config, key=key,
                        style_blend=style_blend, tx=tx, objective=objective, guides=guides,
                        layout=_devices_layout(devices, config)):
        if callback is not None and callback(last):
            break
    assert last is not None
    if last.error is not None:
        raise FloatingPointError(last.error)
    return last.image, {
        "total": last.history, "costs": last.costs, "evals": last.evals,
        "steps": last.step, "compile_s": last.compile_s, "run_s": last.run_s,
        "converged": last.converged,
    }


__all__ = ["Progress", "at_scale", "check_rows", "check_sizes", "iterate", "resize", "scale_sizes",
           "style_sizes", "stylize"]
