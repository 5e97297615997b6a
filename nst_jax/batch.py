"""[driver] Many photos in one style: one compiled, vmapped program per image shape.

Photos of the same shape run as the points of a batched
:class:`~nst_jax.layout.Layout` (``per_point``: each point has its own content target
and start) through the one engine (:func:`nst_jax.engine.iterate`), sharded over
devices like the grid and chunked to bound memory. The style targets are computed
once per chunk (per photo only in the colour modes that match the style to the photo).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.engine import Progress, iterate
from nst_jax.grid import stack_configs
from nst_jax.layout import Layout

Array = jax.Array


def group_by_shape(shapes: Sequence[tuple[int, ...]]) -> list[list[int]]:
    """Indices of equal shapes, in order of first appearance: ``[(2,2),(3,3),(2,2)]`` ->
    ``[[0, 2], [1]]``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(shapes):
        groups.setdefault(tuple(s), []).append(i)
    return list(groups.values())


def iterate_batch(
    contents: Sequence[Array],
    style_rgb: Array | Sequence[Array],
    params: vgg.Params,
    spec: vgg.Preprocessing,
    *,
    config: Config = Config(),
    key: Array | None = None,
    style_blend: Sequence[float] | None = None,
    chunk_points: int | None = None,
    devices: Sequence[Any] | None = None,
    callback: Callable[[int, int, Progress], Any] | None = None,
) -> Iterator[list[tuple[int, np.ndarray, dict[str, Any]]]]:
    """:func:`stylize_batch` one chunk at a time: yields ``[(index, image, info), ...]``
    as each chunk of photos finishes (a driver writes them at once). A ``callback``
    returning ``True`` stops after the current compiled call; the unfinished chunk is
    not yielded."""
    config = config.validate(vgg.arch_of(params))
    key = jax.random.key(0) if key is None else key
    devs = tuple(devices) if devices is not None else tuple(jax.devices())
    chunks = []
    for g in group_by_shape([np.shape(c) for c in contents]):
        k = Layout.of(min(chunk_points or len(g), len(g)), devs).points
        chunks += [g[i:i + k] for i in range(0, len(g), k)]
    total = config.iterations * config.scales * len(chunks)
    done_before = 0
    for idx in chunks:
        layout = Layout.of(len(idx), devs, per_point=True)
        pad = [*idx, *[idx[-1]] * (layout.points - len(idx))]
        batch = np.stack([np.asarray(contents[i], np.float32) for i in pad])
        last = None
        for last in iterate(batch, style_rgb, params, spec, config=config, key=key,
                            style_blend=style_blend, layout=layout,
                            point_configs=stack_configs(config, [{}] * layout.points)):
            if callback is not None and callback(done_before + last.step, total, last):
                return
        assert last is not None
        done_before += last.step
        results = []
        for j, i in enumerate(idx):
            ok = bool(np.asarray(last.ok)[j])
            results.append((i, np.asarray(last.image[j]), {
                "costs": {k: float(v[j]) for k, v in last.costs.items()},
                "history": np.asarray(last.history[j]), "ok": ok,
                "error": None if ok else last.error, "steps": last.step,
                "compile_s": last.compile_s, "run_s": last.run_s,
            }))
        yield results


def stylize_batch(
    contents: Sequence[Array],
    style_rgb: Array | Sequence[Array],
    params: vgg.Params,
    spec: vgg.Preprocessing,
    *,
    config: Config = Config(),
    key: Array | None = None,
    style_blend: Sequence[float] | None = None,
    chunk_points: int | None = None,
    devices: Sequence[Any] | None = None,
    callback: Callable[[int, int, Progress], Any] | None = None,
) -> list[tuple[np.ndarray, dict[str, Any]] | None]:
    """Style-transfer every photo of ``contents`` in the style of ``style_rgb``.

    Args:
      contents: photos ``(H_i, W_i, 3)`` RGB in [0, 1], any mix of sizes (grouped by shape).
      style_rgb, params, spec, config, key, style_blend: as for :func:`nst_jax.stylize`
        (every photo starts from its own ``content+noise`` with the same noise).
      chunk_points: at most this many photos at once (bounds memory), rounded up to a
        multiple of the device count (default: a whole shape group at once).
      devices: devices to shard the photos over (default: all of ``jax.devices()``).
      callback: ``callback(steps_done, total_steps, progress)`` after each compiled
        call; return ``True`` to stop (unfinished photos are then ``None``).

    Returns:
      One ``(image (H_i, W_i, 3), info)`` per photo, in order; ``info`` has the final
      ``costs``, the cost ``history``, ``ok`` (False where a non-finite cost stopped it)
      and the ``error`` message if any. Each photo's result is the one a single
      :func:`nst_jax.stylize` run would give, up to float rounding (the same program, vmapped).

    Example:
      >>> results = stylize_batch([photo1, photo2], style, params, spec, config=Config(iterations=200))
    """
    out: list[Any] = [None] * len(contents)
    for results in iterate_batch(contents, style_rgb, params, spec, config=config, key=key,
                                 style_blend=style_blend, chunk_points=chunk_points,
                                 devices=devices, callback=callback):
        for i, image, info in results:
            out[i] = (image, info)
    return out


__all__ = ["group_by_shape", "iterate_batch", "stylize_batch"]
