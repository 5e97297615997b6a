"""[pure] L-BFGS with fixed steps and a curvature safeguard: one evaluation an iteration.

``optax.lbfgs`` (nst_jax's default L-BFGS) takes each step along the quasi-Newton
direction with a zoom line search: ~1.3 cost-and-gradient evaluations an iteration on
style transfer. Gatys et al.'s reference implementations (Torch's ``optim.lbfgs``,
PyTorch's ``torch.optim.LBFGS`` in neural-style-pt) take the direction's full step
instead, one evaluation an iteration. That needs a safeguard the line search otherwise
provides: a pair ``(s, y)`` with ``s . y <= 0`` (the cost is not convex along ``s``)
makes the inverse-Hessian estimate indefinite, and every later direction may climb
(measured: from the content at 256 px, optax's recursion without its line search took
J from 1.6e8 to 2.2e8). Here such pairs are not stored, as PyTorch does.

The update, with ``g_k`` the gradient at ``x_k`` and ``H_k`` the two-loop recursion
over the stored pairs (Nocedal & Wright 1999, algorithm 7.4)::

    s = x_k - x_{k-1},  y = g_k - g_{k-1}                 (k > 0)
    keep (s, y) iff  s . y > eps |s| |y|                    (the safeguard)
    H_0 = gamma I,  gamma = s . y / y . y  of the newest kept pair (1 before any)
    update = -t H_k g_k,  t = lr min(1, 1 / |g_0|_1) at k = 0, else lr

(PyTorch's first step and its absolute threshold ``s . y > 1e-10``; the relative test
here does not depend on the cost's scale.) Used as any first-order transformation:
``updates, state = tx.update(grad, state, x)``; nst_jax clips the result to the box.

A gradient with a non-finite entry gives a zero update and leaves the state as it was
(selects on the small parts; the history is written only for a kept pair). So the
loop needs no conditional around this update (nst_jax's step puts only the evaluation
under one: ``make_step``'s ``live``): inside a ``lax.cond`` branch, XLA copied
both history arrays in and out of every step (4 x 78 MB at 256 px with 100 pairs,
~20% of a step), because the branch both reads the history and updates it in place.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

Array = jax.Array


class FixedLbfgsState(NamedTuple):
    """The history of :func:`lbfgs_fixed` (``m`` pairs of image-sized arrays)."""

    count: Array        # iterations so far, int32
    kept: Array         # pairs stored so far, int32 (the newest at (kept - 1) % m)
    x: Array            # x at the previous iteration, like the parameters
    g: Array            # its gradient
    s: Array            # (m, *x.shape) parameter differences
    y: Array            # (m, *x.shape) gradient differences
    rho: Array          # (m,) 1 / (s . y) of each slot; 0 for an empty one
    gamma: Array        # the initial inverse-Hessian scale, float32


def _vdot(a: Array, b: Array) -> Array:
    return jnp.vdot(a, b).astype(jnp.float32)


def two_loop(g: Array, s: Array, y: Array, rho: Array, newest: Array, gamma: Array) -> Array:
    """``H g`` by the two-loop recursion over the ring buffers ``s, y (m, ...)``,
    ``rho (m,)`` (empty slots have ``rho = 0`` and drop out), newest pair at ``newest``."""
    m = rho.shape[0]
    order = (newest - jnp.arange(m)) % m  # newest first

    def back(q: Array, i: Array) -> tuple[Array, Array]:
        a = rho[i] * _vdot(s[i], q)
        return q - a.astype(q.dtype) * y[i], a

    q, alphas = lax.scan(back, g, order)

    def forward(r: Array, ia: tuple[Array, Array]) -> tuple[Array, None]:
        i, a = ia
        b = rho[i] * _vdot(y[i], r)
        return r + (a - b).astype(r.dtype) * s[i], None

    r, _ = lax.scan(forward, gamma.astype(g.dtype) * q, (order, alphas), reverse=True)  # oldest first
    return r


def lbfgs_fixed(memory_size: int = 100, learning_rate: float = 1.0,
                eps: float = 1e-8) -> optax.GradientTransformation:
    """L-BFGS with the full quasi-Newton step and skipped non-convex pairs (module
    docstring): ``memory_size`` pairs, step ``learning_rate`` (1: the quasi-Newton
    step itself), pairs kept when ``s . y > eps |s| |y|``. Parameters: one array."""
    if memory_size < 1:
        raise ValueError(f"memory_size: expected >= 1, got {memory_size}")

    def init(x: Array) -> FixedLbfgsState:
        z = jnp.zeros((memory_size, *x.shape), x.dtype)
        return FixedLbfgsState(jnp.int32(0), jnp.int32(0), jnp.zeros_like(x), jnp.zeros_like(x),
                               z, jnp.zeros_like(z), jnp.zeros((memory_size,), jnp.float32),
                               jnp.float32(1.0))

    def update(grad: Array, state: FixedLbfgsState, x: Array | None = None
               ) -> tuple[Array, FixedLbfgsState]:
        if x is None:
            raise ValueError("lbfgs_fixed: update needs the parameters (tx.update(grad, state, x))")
        finite = jnp.isfinite(jnp.sum(grad))
        s, y = x - state.x, grad - state.g
        sy, yy = _vdot(s, y), _vdot(y, y)
        keep = finite & (state.count > 0) & (sy > eps * jnp.sqrt(_vdot(s, s) * yy))
        slot = state.kept % memory_size
        S = state.s.at[slot].set(jnp.where(keep, s, state.s[slot]))
        Y = state.y.at[slot].set(jnp.where(keep, y, state.y[slot]))
        rho = state.rho.at[slot].set(jnp.where(keep, 1.0 / jnp.where(keep, sy, 1.0), state.rho[slot]))
        gamma = jnp.where(keep, sy / jnp.where(keep, yy, 1.0), state.gamma)
        kept = state.kept + keep.astype(jnp.int32)
        direction = two_loop(grad, S, Y, rho, (kept - 1) % memory_size, gamma)
        # the first step's scale reads the whole gradient: only at the first step
        t = learning_rate * lax.cond(
            state.count == 0,
            lambda: jnp.minimum(1.0, 1.0 / jnp.sum(jnp.abs(grad)).astype(jnp.float32)),
            lambda: jnp.float32(1.0))
        new = FixedLbfgsState(state.count + finite.astype(jnp.int32), kept, jnp.where(finite, x, state.x),
                              jnp.where(finite, grad, state.g), S, Y, rho, gamma)
        return jnp.where(finite, -t.astype(grad.dtype) * direction, 0.0), new

    return optax.GradientTransformation(init, update)


__all__ = ["FixedLbfgsState", "lbfgs_fixed", "two_loop"]
