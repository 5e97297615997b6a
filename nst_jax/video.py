"""[driver] Video without flicker (Ruder, Dosovitskiy & Brox 2016): each frame starts
from the previous stylized frame warped by optical flow, and a temporal cost holds
it to the earlier frames where the flow is reliable (:mod:`nst_jax.temporal`).

Every frame runs through the one engine (:func:`nst_jax.engine.iterate`) with the
objective :func:`nst_jax.temporal.temporal_objective`; the warped frames, their
weights and ``lambda_t`` are traced targets, so one compiled program serves every
frame of a clip (same shape). Optical flow is a host function (``flow_fn``; default:
OpenCV's DIS, :func:`nst_jax.videoio.dis_flow`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import temporal, vgg
from nst_jax.config import Config
from nst_jax.engine import Progress, iterate
from nst_jax.layout import Layout
from nst_jax.problem import to_variable

Array = jax.Array


def frame_config(config: Config, iters: int) -> tuple[Config, Config]:
    """The configs of the first frame (``config.iterations`` steps) and of the later
    ones (``iters`` steps). Their report interval is the largest common divisor of both
    counts up to ``config.report_every``; when that is at least 5 (or a count is
    smaller) it is one config, one compiled program: later frames stop after ``iters``
    steps. Otherwise the later frames get a config (and a program) of their own."""
    chunk = math.gcd(config.iterations, iters)
    every = max(d for d in range(1, chunk + 1) if chunk % d == 0 and d <= max(config.report_every, 1))
    if every >= min(5, iters, config.iterations):
        first = config.replace(report_every=every)
        return first, first
    return config, config.replace(iterations=iters)


def temporal_inputs(
    frame: np.ndarray, earlier: Sequence[tuple[np.ndarray, np.ndarray]], long_term: int,
    flow_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Earlier stylized frames warped to ``frame`` and their weights.

    Args:
      frame: the input frame ``t`` ``(H, W, 3)``.
      earlier: ``[(input, output), ...]`` of frames ``t-1, t-2, ...`` (most recent first).
      long_term: ``K``: how many earlier frames the temporal cost looks at.

    Returns:
      ``(prev (K, H, W, 3), weight (K, H, W), consistency (K, H, W))``, zeros past the
      available frames; ``weight`` is :func:`temporal.long_term_weights` of the
      consistencies (for ``K = 1``: the consistency itself).
    """
    H, W = frame.shape[:2]
    prev = np.zeros((long_term, H, W, 3), np.float32)
    cons = np.zeros((long_term, H, W), np.float32)
    for j, (inp, out) in enumerate(earlier[:long_term]):
        bwd = jnp.asarray(flow_fn(frame, inp))
        fwd = jnp.asarray(flow_fn(inp, frame))
        cons[j] = np.asarray(temporal.consistency(fwd, bwd))
        prev[j] = np.asarray(temporal.warp(jnp.asarray(out), bwd)[0])
    weight = np.asarray(temporal.long_term_weights(jnp.asarray(cons)))
    return prev, weight, cons


def _temporal_targets(frame: np.ndarray, use: Sequence[tuple[np.ndarray, np.ndarray]], long_term: int,
                      flow_fn: Callable, cfg: Config, temporal_weight: float) -> tuple[np.ndarray, dict]:
    """``(prev (K, H, W, 3), extra targets)`` of one frame: the earlier outputs warped to it
    and their weights (zeros, and ``lambda`` 0, when there is nothing to hold it to)."""
    prev, weight, _ = temporal_inputs(frame, use, long_term, flow_fn) if use else (
        np.zeros((long_term, *frame.shape), np.float32),
        np.zeros((long_term, *frame.shape[:2]), np.float32), None)
    extra = {"temporal": {"prev": jax.vmap(lambda p: to_variable(p, cfg))(jnp.asarray(prev)),
                          "weight": jnp.asarray(weight),
                          "lambda": jnp.float32(temporal_weight if use else 0.0)}}
    return prev, extra


def iterate_video(
    frames: Iterable[np.ndarray],
    style_rgb: Array | Sequence[Array],
    params: vgg.Params,
    spec: vgg.Preprocessing,
    *,
    config: Config = Config(),
    iters: int = 100,
    temporal_weight: float = 2e6,
    long_term: int = 1,
    warm_start: bool = True,
    flow_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    key: Array | None = None,
    style_blend: Sequence[float] | None = None,
    earlier: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    callback: Callable[[int, Progress], Any] | None = None,
    layout: Layout = Layout(),
    guides: Any = None,
    resume: dict[str, Any] | None = None,
    snapshots: bool = False,
) -> Iterator[tuple[np.ndarray, Progress]]:
    """Stylize a clip frame by frame; yields ``(output (H, W, 3), last Progress)`` per frame.

    Args:
      frames: input frames ``(H, W, 3)`` RGB in [0, 1], all of one shape.
      style_rgb, params, spec, key, style_blend: as for :func:`nst_jax.stylize`.
      config: settings; ``config.iterations`` is the first frame's step count.
      iters: the step count of every later frame (they start close to their result).
      temporal_weight: ``lambda_t`` of :func:`temporal.temporal_cost` (0: none).
      long_term: ``K``: hold each frame to the ``K`` previous ones (Ruder et al.'s
        long-term consistency; 1: the previous frame only).
      warm_start: start each frame from the previous result warped by the flow (else
        from ``config.init``, as independent per-frame runs do).
      flow_fn: ``flow_fn(a, b) -> (H, W, 2)`` flow from image ``a`` to ``b`` (default
        OpenCV DIS, :func:`nst_jax.videoio.dis_flow`).
      earlier: ``[(input, output), ...]`` of the frames before the first one given,
        most recent first (to resume a clip).
      callback: ``callback(frame_index, progress)`` after each compiled call.
      layout: the devices of each frame (:class:`~nst_jax.layout.Layout`: one device,
        the frame split by rows, or with ``config.tile`` its tiles spread over them).
      guides: regions, style masks and a content-strength map
        (:class:`nst_jax.guides.Guides`; masks are resized to the frames): the same for
        every frame, or ``guides(t)`` for the ``t``-th frame of ``frames`` (masks that
        move with the clip).
      snapshots: give each progress its :attr:`~nst_jax.engine.Progress.snapshot`;
        ``resume=`` one of them continues the first frame given exactly there (an
        interrupted frame; pass the same ``earlier``).

    Coarse-to-fine (``config.scales``) applies to the frames that start afresh with no
    earlier frame to hold to (the first; all of them when independent); the others
    start near their result and run at full size.

    With ``temporal_weight = 0`` and ``warm_start=False`` every frame is an independent
    run of ``config.iterations`` steps (the flickering baseline).
    """
    if flow_fn is None:
        from nst_jax.videoio import dis_flow as flow_fn
    config = config.validate(vgg.arch_of(params))
    first_cfg, later_cfg = frame_config(config, iters)
    later_cfg = later_cfg.replace(scales=1)
    hist = list(earlier)
    for t, frame in enumerate(frames):
        frame = np.asarray(frame, np.float32)
        use = hist if (warm_start or temporal_weight) else []
        later = bool(hist) and warm_start
        cfg, n = (later_cfg, iters) if later else (first_cfg, config.iterations)
        if use:
            cfg = cfg.replace(scales=1)
        prev, extra = _temporal_targets(frame, use, long_term, flow_fn, cfg, temporal_weight)
        plain = cfg.scales > 1  # no temporal targets (one size each): the plain objective
        last = None
        for last in iterate(frame, style_rgb, params, spec, config=cfg, key=key,
                            style_blend=style_blend, init=prev[0] if later else None,
                            objective=None if plain else temporal.temporal_objective,
                            extra_targets=None if plain else extra, layout=layout,
                            guides=guides(t) if callable(guides) else guides,
                            resume=resume if t == 0 else None, snapshots=snapshots):
            if callback is not None:
                callback(t, last)
            if last.step >= n * cfg.scales:
                break
        assert last is not None
        if last.error is not None:
            raise FloatingPointError(f"frame {t}: {last.error}")
        out = np.asarray(last.image)
        hist = [(frame, out), *hist][:long_term]
        yield out, last


__all__ = ["frame_config", "iterate_video", "temporal_inputs"]
