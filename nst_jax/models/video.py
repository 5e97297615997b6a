"""[driver] A trained network on video: one forward pass per frame, and a cheap temporal fix.

A feed-forward network stylises each frame on its own, so small changes between input
frames (noise, lighting, sub-pixel motion) become visible flicker in the output. The
fix offered here is the cheapest one that uses what :mod:`nst_jax.temporal` already
has: where the optical flow is reliable (Ruder et al. 2016's consistency mask ``c``),
blend the network's frame with the previous *output* warped to this frame,

    O_t = N_t + b * c * (warp(O_{t-1}, flow_t->t-1) - N_t),

``b`` = ``blend`` in [0, 1) (0: frames independent); disoccluded regions and motion
boundaries take the network's frame as it is. It costs two optical flows per frame
(host, OpenCV DIS) and one warp; the stability it buys is measured by
``benchmarks/bench_models.py``'s video section with
:func:`nst_jax.temporal.warping_error`, the measure ``bench_video.py`` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import temporal
from nst_jax.models import johnson as J


@jax.jit
def blend_previous(net: jax.Array, prev_out: jax.Array, fwd: jax.Array, bwd: jax.Array,
                   b: float | jax.Array) -> jax.Array:
    """``N + b c (warp(O_prev, bwd) - N)`` with ``c`` = :func:`temporal.consistency` of the
    input flows ``fwd`` (t-1 -> t) and ``bwd`` (t -> t-1); all images ``(H, W, 3)``."""
    c = temporal.consistency(fwd, bwd)[..., None]
    warped, _ = temporal.warp(prev_out, bwd)
    return net + b * c * (warped - net)


def stylize_frames(frames: Iterable[np.ndarray], params: J.Params, arch: J.Arch,
                   style_w: np.ndarray | None = None, *, strength: float = 1.0, blend: float = 0.0,
                   flow_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                   ) -> Iterator[np.ndarray]:
    """The network on each frame ``(H, W, 3)`` in [0, 1] (one compile for the clip),
    with the temporal blend ``blend`` (``flow_fn(a, b)``: the flow from a to b; default
    OpenCV's DIS, :func:`nst_jax.videoio.dis_flow`). Yields ``(H, W, 3)`` float32."""
    if not 0.0 <= blend < 1.0:
        raise ValueError(f"blend: expected a number in [0, 1), got {blend}")
    if blend and flow_fn is None:
        from nst_jax.videoio import dis_flow as flow_fn
    w = jnp.asarray(J.style_weights(arch) if style_w is None else style_w, jnp.float32)
    prev_in = prev_out = None
    for frame in frames:
        y = J.apply_jit(params, frame, w, arch=arch, strength=strength)
        if blend and prev_in is not None:
            fwd, bwd = flow_fn(prev_in, frame), flow_fn(frame, prev_in)
            y = blend_previous(y, prev_out, jnp.asarray(fwd), jnp.asarray(bwd), blend)
        prev_in, prev_out = frame, y
        yield np.asarray(y)


__all__ = ["blend_previous", "stylize_frames"]
