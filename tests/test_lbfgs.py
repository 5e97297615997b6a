"""L-BFGS with fixed steps (nst_jax.lbfgs): the two-loop recursion against the dense
BFGS inverse update, the safeguard, the first step, convergence, and a run through the
engine and the command line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rand_image

from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.lbfgs import lbfgs_fixed, two_loop
from nst_jax.optimize import iterate
from nst_jax.step import fresh_state


def _dense_h(pairs: list[tuple[np.ndarray, np.ndarray]], gamma: float) -> np.ndarray:
    """The inverse-Hessian estimate as a matrix: ``H <- (I - r s y^T) H (I - r y s^T) + r s s^T``
    from ``gamma I``, oldest pair first (Nocedal & Wright 1999, eq. 6.17), in float64."""
    n = pairs[0][0].size
    H, eye = gamma * np.eye(n), np.eye(n)
    for s, y in pairs:
        r = 1.0 / (s @ y)
        H = (eye - r * np.outer(s, y)) @ H @ (eye - r * np.outer(y, s)) + r * np.outer(s, s)
    return H


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_two_loop_equals_the_dense_bfgs_update_in_a_wrapped_ring(transform):
    rng = np.random.default_rng(0)
    n, m = 6, 3
    A = rng.normal(size=(n, n))
    A = A @ A.T + n * np.eye(n)  # SPD: every pair has s.y > 0
    pairs = [(s, A @ s) for s in rng.normal(size=(5, n))]  # 5 pairs into 3 slots
    S, Y, rho = np.zeros((m, n)), np.zeros((m, n)), np.zeros(m)
    for k, (s, y) in enumerate(pairs):
        S[k % m], Y[k % m], rho[k % m] = s, y, 1.0 / (s @ y)
    s_new, y_new = pairs[-1]
    gamma = (s_new @ y_new) / (y_new @ y_new)
    g = rng.normal(size=n)
    got = transform(two_loop)(jnp.asarray(g, jnp.float32), jnp.asarray(S, jnp.float32),
                              jnp.asarray(Y, jnp.float32), jnp.asarray(rho, jnp.float32),
                              jnp.int32(4 % m), jnp.float32(gamma))
    want = _dense_h(pairs[-m:], gamma) @ g
    # float32 recursion against float64 matrices: relative rounding of ~10 dot products
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


def test_first_step_is_the_scaled_gradient_and_a_pair_with_negative_curvature_is_skipped():
    tx = lbfgs_fixed(memory_size=4)
    x0 = jnp.asarray([0.5, 0.5, 0.5], jnp.float32)
    g0 = jnp.asarray([2.0, -1.0, 1.0], jnp.float32)  # |g|_1 = 4: t = 1/4
    st = fresh_state(tx, x0)
    u, st = tx.update(g0, st, x0)
    np.testing.assert_allclose(np.asarray(u), -np.asarray(g0) / 4.0, rtol=1e-6)
    assert int(st.kept) == 0
    # s = x1 - x0 = u; a gradient that decreased along s has s.y < 0: not stored
    x1 = x0 + u
    g1 = g0 + 3.0 * u / float(jnp.linalg.norm(u))  # y parallel to s: s.y > 0 -> kept
    g_bad = g0 - 3.0 * u / float(jnp.linalg.norm(u))  # y anti-parallel: s.y < 0 -> skipped
    _, kept_state = tx.update(g1, st, x1)
    u_bad, bad_state = tx.update(g_bad, st, x1)
    assert int(kept_state.kept) == 1 and float(kept_state.rho[0]) > 0
    assert int(bad_state.kept) == 0 and float(bad_state.rho[0]) == 0.0
    # without a pair the direction is the gradient itself (gamma 1, full step): a descent step
    np.testing.assert_allclose(np.asarray(u_bad), -np.asarray(g_bad), rtol=1e-6)
    assert float(jnp.vdot(u_bad, g_bad)) < 0


def test_converges_on_a_convex_quadratic():
    rng = np.random.default_rng(1)
    n = 20
    Q = rng.normal(size=(n, n))
    A = jnp.asarray(Q @ Q.T / n + np.eye(n), jnp.float32)
    b = jnp.asarray(rng.normal(size=n), jnp.float32)
    grad = jax.grad(lambda x: 0.5 * x @ A @ x - b @ x)
    tx = lbfgs_fixed(memory_size=8)
    x = jnp.zeros(n, jnp.float32)
    st = fresh_state(tx, x)
    step = jax.jit(lambda x, st: (lambda u, s: (x + u, s))(*tx.update(grad(x), st, x)))
    for _ in range(60):
        x, st = step(x, st)
    want = np.linalg.solve(np.asarray(A, np.float64), np.asarray(b, np.float64))
    # float32 on a conditioning of ~10: converged to a few ulps of the solution's scale
    np.testing.assert_allclose(np.asarray(x), want, atol=1e-4)


def test_memory_size_is_checked_and_update_needs_the_parameters():
    with pytest.raises(ValueError, match="memory_size: expected >= 1, got 0"):
        lbfgs_fixed(memory_size=0)
    tx = lbfgs_fixed(memory_size=2)
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(x, fresh_state(tx, x))


def test_engine_run_takes_one_evaluation_an_iteration_and_descends(params16):
    C, S = rand_image(32, 32, 1), rand_image(32, 32, 2)
    cfg = Config(alpha=1.0, beta=1e-2, iterations=30, report_every=10, optimizer="lbfgs",
                 lbfgs_history=5, lbfgs_linesearch="none", init="content")
    ps = list(iterate(C, S, params16, vgg.CAFFE, config=cfg, key=jax.random.key(0)))
    last = ps[-1]
    assert last.step == 30 and last.evals == 30 and last.error is None
    h = last.history
    assert h[-1] < 0.5 * h[0]
    assert last.image.min() >= 0.0 and last.image.max() <= 1.0  # clipped to the box


def test_unknown_linesearch_is_refused():
    msg = r"lbfgs_linesearch: expected one of \('zoom', 'none'\), got 'wolfe'"
    with pytest.raises(ValueError, match=msg):
        Config(lbfgs_linesearch="wolfe").validate("vgg16")


def test_a_non_finite_gradient_changes_nothing():
    """The transformation guards itself (the loop calls it without a conditional): a
    gradient with a NaN gives a zero update and the state as it was, bitwise (selects
    and a masked write of the same values)."""
    tx = lbfgs_fixed(memory_size=3)
    x = jnp.asarray([0.2, 0.4, 0.6], jnp.float32)
    st = fresh_state(tx, x)
    for k in range(4):  # a few kept pairs
        g = 2.0 * x + jnp.float32(0.1 * k)
        u, st = tx.update(g, st, x)
        x = x + u
    bad = jnp.asarray([0.1, jnp.nan, 0.3], jnp.float32)
    u, after = jax.jit(tx.update)(bad, st, x)
    np.testing.assert_array_equal(np.asarray(u), 0.0)
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(st), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
