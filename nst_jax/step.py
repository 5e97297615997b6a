"""[pure] The optimisation step and the fused loop of steps.

``make_step(tx, spec)`` is the pure update of X by any optax transformation;
``make_run_fn`` fuses up to ``chunk`` steps into one compiled loop (a ``while_loop``
on CPU; a ``fori_loop`` of a static trip count for GPUs and TPUs) that stops at a
non-finite cost or when the tolerance test passes. The loop carries a
:class:`LoopState`: the optimizer state, the running average of X (``avg_decay``),
the step count and a window of recent costs (``tol``), so iterate averaging and
convergence stopping happen inside the compiled loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from nst_jax import swd, vgg
from nst_jax.config import Config
from nst_jax.lbfgs import FixedLbfgsState, lbfgs_fixed
from nst_jax.problem import Targets, box_penalty, precision_scope
from nst_jax.problem import objective as default_objective

Array = jax.Array
Objective = Callable[..., tuple[Array, dict[str, Array]]]


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """The optax transformation named by ``config.optimizer``.

    ``adam``: ``optax.adam(learning_rate)`` (b1=0.9, b2=0.999, eps=1e-8), learning
    rate in pixel units. ``lbfgs``: ``optax.lbfgs`` with its zoom line search and
    ``lbfgs_history`` pairs; with ``lbfgs_linesearch="none"`` :func:`nst_jax.lbfgs.lbfgs_fixed`
    (full steps, one evaluation an iteration: a first-order transformation here, clipped
    to the box like Adam). ``sgd``: plain gradient descent (for the alpha/beta study).
    """
    if config.optimizer == "adam":
        return optax.adam(config.learning_rate)
    if config.optimizer == "lbfgs" and config.lbfgs_linesearch == "none":
        return lbfgs_fixed(config.lbfgs_history)
    if config.optimizer == "lbfgs":
        return optax.lbfgs(memory_size=config.lbfgs_history)
    if config.optimizer == "sgd":
        return optax.sgd(config.learning_rate)
    raise ValueError(f"optimizer: expected adam, lbfgs or sgd, got {config.optimizer!r}")


def fresh_state(tx: optax.GradientTransformation, G: Array) -> Any:
    """``tx.init(G)`` with every leaf in its own buffer (optax states may alias leaves,
    e.g. L-BFGS, which donation forbids)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tx.init(G))


class StepInfo(NamedTuple):
    """What one step reports: the cost at the start of the step, the evaluations used
    and, for first-order optimizers, the objective's terms at the start of the step
    (``None`` for line-search optimizers, whose first evaluation may come from their
    state)."""

    cost: Array
    evals: Array
    terms: Any = None


def make_step(tx: optax.GradientTransformation, spec: vgg.Preprocessing, *,
              objective: Objective = default_objective) -> Callable:
    """A pure update ``step(X, opt_state, params, targets, config) -> (X, opt_state, info)``.

    First-order optimizers (Adam, SGD): ``X <- clip(X + tx.update(grad J(X)), 0, 1)``,
    one evaluation per step. Line-search optimizers (L-BFGS): the box is a quadratic
    penalty ``box_weight * box_penalty(X)`` added to J, a smooth equivalent of the
    projection that the line search and the curvature pairs can use (a projection
    would invalidate the value and gradient the line search caches, doubling the
    evaluations per iteration; measured on the bundled examples at 64 px and 40
    evaluations: J = 3.43e4 projected vs 2.33e4 penalised, Adam 3.25e4); the value
    and gradient at the accepted point are reused, and the result is clipped.

    Only X is differentiated; params, targets and the loss weights in ``config`` are
    ordinary (traceable) arguments. ``info.cost`` is J at the incoming X (with the
    penalty for L-BFGS); when it is not finite, X and the state come back unchanged.
    Jit it once (``jax.jit(step, donate_argnums=(0, 1))``) or use :func:`make_run` to
    fuse many steps.

    ``live`` (a traced bool, optional): False skips the step: X and the state come back
    unchanged, with cost NaN, ``evals`` 0 and NaN terms. A ``lax.cond`` around the whole
    step, except for :func:`nst_jax.lbfgs.lbfgs_fixed`, whose update guards itself (a
    non-finite gradient changes nothing): there only the evaluation is conditional,
    because a conditional around an update that reads and writes the history in place
    makes XLA copy the history in and out (2 m image-sized arrays; benchmarks/README.md
    "One conditional"). Under ``vmap`` a conditional becomes a select.

    ``objective``: ``(X, params, targets, config, spec) -> (J, terms)``, default
    :func:`nst_jax.problem.objective`; a custom one adds or replaces terms (see the
    README's example).
    """

    def step(X: Array, opt_state: Any, params: vgg.Params, targets: Targets, config: Config,
             live: Array | None = None):
        with precision_scope(config):
            return _step(X, opt_state, params, targets, config, live)

    def _step(X: Array, opt_state: Any, params: vgg.Params, targets: Targets, config: Config,
              live: Array | None):
        tree_get = optax.tree_utils.tree_get
        linesearch = tree_get(opt_state, "value", None) is not None

        def value(x: Array) -> Array:
            j = objective(x, params, targets, config, spec)[0]
            return j + config.box_weight * box_penalty(x) if linesearch else j

        def evaluate(x: Array) -> tuple[tuple[Array, Any], Array]:
            return jax.value_and_grad(lambda x: objective(x, params, targets, config, spec), has_aux=True)(x)

        if live is not None and not isinstance(opt_state, FixedLbfgsState):
            def run(c: tuple[Array, Any]) -> tuple[Array, Any, StepInfo]:
                return _step(*c, params, targets, config, None)

            def skip(c: tuple[Array, Any]) -> tuple[Array, Any, StepInfo]:
                return (*c, _skipped(jax.eval_shape(run, c)[2]))

            return lax.cond(live, run, skip, (X, opt_state))
        if not linesearch:
            if live is None:
                (j, terms), grad = evaluate(X)
            else:  # only the evaluation is conditional: the update below guards itself
                (j, terms), grad = lax.cond(live, evaluate,
                                            lambda x: _skipped(jax.eval_shape(evaluate, x)), X)

            def apply(operand: tuple[Array, Any]) -> tuple[Array, Any]:
                X, opt_state = operand
                updates, opt_state = tx.update(grad, opt_state, X)
                return jnp.clip(optax.apply_updates(X, updates), 0.0, 1.0), opt_state

            if isinstance(opt_state, FixedLbfgsState):
                # guards itself (see nst_jax.lbfgs): a non-finite gradient changes nothing
                g = jnp.where(jnp.isfinite(j), grad, jnp.nan)
                updates, opt_state = tx.update(g, opt_state, X)
                X = jnp.where(jnp.isfinite(j), jnp.clip(optax.apply_updates(X, updates), 0.0, 1.0), X)
            else:
                X, opt_state = _if_finite(j, apply, (X, opt_state))
            return X, opt_state, StepInfo(j, jnp.int32(1) if live is None else live.astype(jnp.int32), terms)
        fresh = ~jnp.isfinite(tree_get(opt_state, "value"))
        j, grad = optax.value_and_grad_from_state(value)(X, state=opt_state)

        def apply_ls(operand: tuple[Array, Any]) -> tuple[Array, Any]:
            X, opt_state = operand
            updates, opt_state = tx.update(grad, opt_state, X, value=j, grad=grad, value_fn=value)
            return optax.apply_updates(X, updates), opt_state

        X, opt_state = _if_finite(j, apply_ls, (X, opt_state))
        searched = jnp.asarray(tree_get(opt_state, "num_linesearch_steps"), jnp.int32)
        evals = fresh.astype(jnp.int32) + jnp.where(jnp.isfinite(j), searched, 0)
        return X, opt_state, StepInfo(j, evals)

    return step


def _skipped(shapes: Any) -> Any:
    """What a skipped step reports, for a pytree of ``jax.ShapeDtypeStruct``: NaN
    arrays of those shapes (0 for integer leaves, e.g. the evaluation count)."""
    return jax.tree.map(lambda a: jnp.full(a.shape, jnp.nan if a.dtype.kind == "f" else 0, a.dtype), shapes)


def _if_finite(j: Array, apply: Callable, operand: Any) -> Any:
    """``apply(operand)`` when the cost ``j`` is finite, else ``operand`` unchanged.

    A conditional, not ``where(finite, apply(operand), operand)``: the select keeps the
    old state alive beside the new one, so XLA cannot update it in place: for L-BFGS
    that copied its whole history every step (2 m image-sized arrays; the fused loop
    measured 30% slower at 256 px with m = 100 on CPU, benchmarks/README.md "The step's
    guard"). Under ``vmap`` (loss-weight grids) the conditional becomes that select.
    """
    return lax.cond(jnp.isfinite(j), apply, lambda o: o, operand)


class LoopState(NamedTuple):
    """What the loop carries besides X (a pytree; checkpointed as a whole)."""

    opt: Any          # the optax state
    avg: Array        # running average of X; shape (0,) when avg_decay == 0 (no image-sized buffer)
    t: Array          # steps applied at this scale, int32
    recent: Array     # (tol_window,) ring buffer of recent costs
    converged: Array  # bool: the tolerance test passed


def init_loop_state(tx: optax.GradientTransformation, X: Array, config: Config) -> LoopState:
    """A fresh :class:`LoopState` for X (every leaf in its own buffer, for donation).

    The cost ring buffer starts at zeros: a slot is read only ``tol_window`` steps after
    it was written. (Not NaN: a multi-host ``device_put`` checks that every process
    passes equal values, and NaN != NaN.) The running average is X-sized only when
    ``avg_decay > 0``: otherwise it is never read, and an image-sized buffer of zeros
    would cost 201 MB at 4096 px.
    """
    avg = jnp.zeros_like(X) if config.avg_decay > 0 else jnp.zeros((0,), X.dtype)
    return LoopState(fresh_state(tx, X), avg, jnp.int32(0),
                     jnp.zeros((config.tol_window,), jnp.float32), jnp.bool_(False))


def averaged(X: Array, ls: LoopState, config: Config) -> Array:
    """The result X: the bias-corrected average ``avg_t / (1 - d^t)`` when
    ``avg_decay = d > 0`` (X itself before the first step), else X."""
    d = config.avg_decay
    if d == 0.0:
        return X
    corr = 1.0 - jnp.power(jnp.float32(d), ls.t.astype(jnp.float32))
    return jnp.where(ls.t > 0, ls.avg / jnp.maximum(corr, 1e-12), X)


def _guarded_step(step: Callable, *, terms: bool = False) -> Callable:
    """One loop step with the bookkeeping that must live inside the compiled loop.

    ``(X, ls, ok, params, targets, config, active=True) -> (X, ls, cost, evals, ok,
    applied, terms)``. ``terms``: the objective's terms at the incoming X (NaN for a
    skipped step; ``None`` for line-search optimizers, which report none) when
    ``terms``, else ``None``. ``active`` False skips the step like a stopped run (the
    fori loop's iterations past ``n``). The step runs under make_step's ``live``
    conditional even in the while loop, whose condition already stops a stopped run:
    without it XLA:CPU's buffers for the VGG16 512 px chunk grew from 307 to 387 MB
    (Adam; benchmarks/README.md "One conditional"). The
    update is applied only while ``ok`` and not converged, and only if its cost is
    finite: a rejected step returns the incoming X and state, so X stays the last image
    with a finite cost. Applied steps update the running average
    ``avg <- d avg + (1 - d) X`` and the cost window; the tolerance test
    ``|J_t - J_{t-w}| < tol |J_{t-w}|`` sets ``converged``.
    """

    def guarded(X, ls, ok, params, targets, config, active: Array | bool = True):
        targets = swd.at_step(targets, ls.t)  # swd's directions change with the step
        # the step itself leaves X and the state as they were at a non-finite cost
        # (:func:`_if_finite`); a stopped run does not step at all (make_step's ``live``).
        # Conditionals, so that XLA updates the state in place.
        live = ok & ~ls.converged & active
        X, opt, info = step(X, ls.opt, params, targets, config, live)
        info = StepInfo(info.cost.astype(jnp.float32), info.evals.astype(jnp.int32),
                        info.terms if terms else None)
        finite = jnp.isfinite(info.cost)
        applied = live & finite
        ok = ok & (finite | ~live)
        d = config.avg_decay
        avg = jnp.where(applied, d * ls.avg + (1.0 - d) * X, ls.avg) if d > 0 else ls.avg
        w = config.tol_window
        pos = ls.t % w
        old = ls.recent[pos]
        conv_now = jnp.bool_(False)
        if config.tol > 0:
            conv_now = (ls.t >= w) & (jnp.abs(info.cost - old) < config.tol * jnp.abs(old))
        recent = jnp.where(applied, ls.recent.at[pos].set(info.cost), ls.recent)
        ls = LoopState(opt, avg, ls.t + applied.astype(jnp.int32), recent,
                       ls.converged | (applied & conv_now))
        cost = jnp.where(applied, info.cost, jnp.nan)
        return X, ls, cost, jnp.where(applied, info.evals, 0), ok, applied, info.terms

    return guarded


def _nan_terms(objective: Objective, spec: vgg.Preprocessing) -> Callable:
    """``(X, opt, params, targets, config) ->`` the objective's terms, all NaN (their
    structure from an abstract trace of the forward pass), or ``None`` for line-search
    optimizers (:class:`StepInfo`)."""

    def like(X, opt, params, targets, config):
        if optax.tree_utils.tree_get(opt, "value", None) is not None:
            return None
        return _skipped(jax.eval_shape(lambda x: objective(x, params, targets, config, spec)[1], X))

    return like


def make_run_fn(tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int, *,
                objective: Objective = default_objective, static_trip: bool = False,
                first_terms: bool = False) -> Callable:
    """Pure ``run(X, ls, params, targets, config, n) -> (X, ls, costs, evals, done, ok)``.

    Runs up to ``n <= chunk`` steps (``n`` is traced, so one compilation serves every
    chunk length) in one compiled loop, stopping at a non-finite cost (``ok`` False; X
    is the last image with a finite cost) or when the tolerance test passes
    (``ls.converged``). ``costs (chunk,)`` holds J before each applied step, NaN after.
    :func:`make_run` jits it; :mod:`nst_jax.grid` vmaps it over loss weights.

    ``static_trip=False`` (CPU): a ``lax.while_loop`` whose condition reads the state.
    ``static_trip=True`` (GPUs, TPUs): a ``lax.fori_loop`` of exactly ``chunk``
    iterations, whose trip count XLA knows (command buffers can capture the whole
    chunk: no host round trip per iteration to evaluate a condition); iteration ``i``
    runs the step under ``lax.cond(i < n)``, and a stopped run (``ok`` False or
    converged) no longer changes the state (for one image a ``lax.cond`` skips the
    step; under ``vmap`` a per-point mask), so the results are the while loop's. On
    XLA:CPU both forms measure the same time and the same buffers (307 MB for the VGG16
    512 px Adam chunk, ``benchmarks/bench_levers.py``); CPU keeps the while loop, which
    ends a converged run's chunk at once.

    ``first_terms=True`` adds a seventh result: the objective's terms at the incoming X,
    from the chunk's first evaluation (NaN if it did not step; ``None`` for line-search
    optimizers). The driver reports them as the costs of the image the previous chunk
    ended on, instead of a separate forward pass.
    """
    nan_terms = _nan_terms(objective, spec) if first_terms else None
    guarded = _guarded_step(make_step(tx, spec, objective=objective), terms=first_terms)

    def run(X, ls, params, targets, config, n):
        params = vgg.with_backward_kernels(params)  # flipped once per call, not per step
        first = None if nan_terms is None else nan_terms(X, ls.opt, params, targets, config)
        if static_trip:
            out = _fori_chunk(guarded, chunk, X, ls, params, targets, config, n, first)
            return out if first_terms else out[:-1]

        def cond(c):
            i, _, ls, _, _, ok, _ = c
            return (i < n) & ok & ~ls.converged

        def body(c):
            i, X, ls, costs, evals, ok, first = c
            X, ls, cost, ev, ok, applied, terms = guarded(X, ls, ok, params, targets, config)
            first = jax.tree.map(lambda f, t: jnp.where(i == 0, t, f), first, terms)
            return (i + applied.astype(jnp.int32), X, ls, costs.at[i].set(cost), evals + ev, ok, first)

        init = (jnp.int32(0), X, ls, jnp.full((chunk,), jnp.nan, jnp.float32),
                jnp.int32(0), jnp.bool_(True), first)
        done, X, ls, costs, evals, ok, first = lax.while_loop(cond, body, init)
        return (X, ls, costs, evals, done, ok, first) if first_terms else (X, ls, costs, evals, done, ok)

    return run


def _fori_chunk(guarded: Callable, chunk: int, X, ls, params, targets, config, n, first):
    """The chunk as a ``fori_loop`` of ``chunk`` iterations (see :func:`make_run_fn`):
    ``(X, ls, costs, evals, done, ok, first)``, ``first`` the terms of iteration 0."""

    def body(i, c):  # iterations past n and a stopped run do not step (guarded's conditional)
        X, ls, costs, evals, done, ok, first = c
        X, ls, cost, ev, ok, applied, terms = guarded(X, ls, ok, params, targets, config, i < n)
        first = jax.tree.map(lambda f, t: jnp.where(i == 0, t, f), first, terms)
        return X, ls, costs.at[i].set(cost), evals + ev, done + applied.astype(jnp.int32), ok, first

    init = (X, ls, jnp.full((chunk,), jnp.nan, jnp.float32), jnp.int32(0), jnp.int32(0), jnp.bool_(True),
            first)
    return lax.fori_loop(0, chunk, body, init)


def make_run(
    tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int, *, fused: bool = True,
    objective: Objective = default_objective, static_trip: bool = False, first_terms: bool = False,
) -> Callable:
    """A jitted ``run`` with :func:`make_run_fn`'s signature and results
    (``first_terms``: the fused loops only).

    ``fused=True``: :func:`make_run_fn` jitted once, X and the loop state donated.
    ``fused=False``: a host loop of ``n`` calls of one jitted (donating) guarded step,
    dispatched asynchronously: the host syncs only when the caller reads the results,
    once per chunk. The driver uses the fused loop for every optimizer (see
    :func:`nst_jax.layout.single_programs` for the measurements). The host loop
    stops like the fused one at a non-finite cost or convergence: after dispatching
    step i it waits for step i-1's ``alive`` flag (so one step stays in flight) and
    stops there, at most one step later than the fused loop.
    """
    if fused:
        return jax.jit(make_run_fn(tx, spec, chunk, objective=objective, static_trip=static_trip,
                                   first_terms=first_terms), donate_argnums=(0, 1))
    if first_terms:
        raise ValueError("first_terms: the fused loop only")
    guarded_step = _guarded_step(make_step(tx, spec, objective=objective))

    def guarded_alive(X, ls, ok, params, targets, config):
        X, ls, cost, ev, ok, ap, _ = guarded_step(X, ls, ok, params, targets, config)
        return X, ls, cost, ev, ok, ap, ok & ~ls.converged

    guarded = jax.jit(guarded_alive, donate_argnums=(0, 1))

    def run(X, ls, params, targets, config, n):
        ok = jnp.bool_(True)
        costs, evals, applied, alive = [], [], [], []
        for i in range(int(n)):
            X, ls, cost, ev, ok, ap, al = guarded(X, ls, ok, params, targets, config)
            costs.append(cost)
            evals.append(ev)
            applied.append(ap)
            alive.append(al)
            if i >= 1 and not bool(alive[i - 1]):  # waits for step i-1 only
                break
        done = jnp.sum(jnp.stack(applied)).astype(jnp.int32)
        c = jnp.concatenate([jnp.stack(costs), jnp.full((chunk - len(costs),), jnp.nan)])
        return X, ls, c, jnp.sum(jnp.stack(evals)), done, ok

    return run


__all__ = [
    "LoopState", "Objective", "StepInfo", "averaged", "fresh_state", "init_loop_state",
    "make_optimizer", "make_run", "make_run_fn", "make_step",
]
