"""[pure + a thin driver] Optimise the pixels of G.

Data flow::

    targets = compute_targets(params, spec, C, S, config)         # once, outside any loop
    step    = make_step(tx, spec)                                   # pure; jit it once
    run     = make_run(tx, spec, chunk)                              # jitted: fori_loop of steps
    for progress in iterate(C, S, params, spec, config=..., key=...):  # thin driver
        ...

G lives in RGB pixel space, ``(H, W, 3)`` in [0, 1]; preprocessing to the network's
input happens inside the loss, so learning rates are in pixel units and the box
constraint is a plain clip. **Projection:** after every update G is clipped to
[0, 1] (projected gradient descent). L-BFGS reuses the value and gradient its
line search computed at the accepted point, unless the projection moved G; then
they are re-evaluated at the projected point, so the line search and the curvature
pairs always see the true cost of the image held (the benchmark reports the
evaluations per iteration this costs).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from nst_jax import losses, vgg
from nst_jax.config import Config

Array = jax.Array
Targets = dict[str, Any]


# ----------------------------------------------------------------------------- pure pieces


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """The optax transformation named by ``config.optimizer``.

    ``adam``: ``optax.adam(learning_rate)`` (b1=0.9, b2=0.999, eps=1e-8), learning
    rate in pixel units. ``lbfgs``: ``optax.lbfgs`` with its zoom line search and
    ``lbfgs_history`` pairs. ``sgd``: plain gradient descent (for the alpha/beta study).
    """
    if config.optimizer == "adam":
        return optax.adam(config.learning_rate)
    if config.optimizer == "lbfgs":
        return optax.lbfgs(memory_size=config.lbfgs_history)
    if config.optimizer == "sgd":
        return optax.sgd(config.learning_rate)
    raise ValueError(f"optimizer: expected adam, lbfgs or sgd, got {config.optimizer!r}")


def init_image(content_rgb: Array, config: Config, *, key: Array) -> Array:
    """The starting G, ``(H, W, 3)`` in [0, 1].

    ``noise``: ``U(0, 1)`` white noise (the lecture's start); ``content``: C;
    ``content+noise``: ``(1 - r) C + r U(0, 1)`` with ``r = noise_ratio``.
    """
    noise = jax.random.uniform(key, content_rgb.shape, jnp.float32)
    if config.init == "noise":
        return noise
    if config.init == "content":
        return jnp.asarray(content_rgb, jnp.float32)
    if config.init == "content+noise":
        r = config.noise_ratio
        return (1.0 - r) * jnp.asarray(content_rgb, jnp.float32) + r * noise
    raise ValueError(f"init: expected noise, content or content+noise, got {config.init!r}")


def compute_targets(
    params: vgg.Params,
    spec: vgg.Preprocessing,
    content_rgb: Array,
    style_rgbs: Array | Sequence[Array],
    config: Config,
    style_blend: Sequence[float] | None = None,
) -> Targets:
    """Content activations of C and style Grams of S, computed once.

    With several style images the targets are the blend ``sum_k w_k T_k`` of their
    per-pixel Grams (:func:`losses.style_target`), weights normalised to sum to 1,
    as jcjohnson/neural-style blends Gram targets.

    Returns:
      ``{"content": (nH, nW, nC), "style": {layer: (nC, nC)}}``.
    """
    styles = [style_rgbs] if hasattr(style_rgbs, "ndim") else list(style_rgbs)
    w = np.ones(len(styles)) if style_blend is None else np.asarray(style_blend, np.float64)
    if w.shape != (len(styles),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(
            f"style_blend: expected {len(styles)} non-negative weights with a positive sum, "
            f"got {list(np.atleast_1d(w))}"
        )
    w = w / w.sum()

    @jax.jit
    def _targets(content: Array, styles: list[Array]) -> Targets:
        feats = vgg_features_rgb(params, spec, content, [config.content_layer], config.pooling)
        style_t = {layer: 0.0 for layer in config.style_layers}
        for wk, s in zip(w, styles, strict=True):
            sf = vgg_features_rgb(params, spec, s, config.style_layers, config.pooling)
            for layer in config.style_layers:
                style_t[layer] = style_t[layer] + float(wk) * losses.style_target(sf[layer])
        return {"content": feats[config.content_layer], "style": style_t}

    return _targets(jnp.asarray(content_rgb, jnp.float32),
                    [jnp.asarray(s, jnp.float32) for s in styles])


def vgg_features_rgb(
    params: vgg.Params, spec: vgg.Preprocessing, rgb: Array, layers: Sequence[str], pooling: str
) -> dict[str, Array]:
    """:func:`vgg.vgg_features` of an RGB image in [0, 1]."""
    return vgg.vgg_features(params, vgg.preprocess(rgb, spec), layers, pooling=pooling)


def objective(
    G: Array, params: vgg.Params, targets: Targets, config: Config, spec: vgg.Preprocessing
) -> tuple[Array, dict[str, Array]]:
    """``J(G)`` and its components for RGB ``G (H, W, 3)``; see :func:`losses.total_cost`."""
    layers = [config.content_layer, *config.style_layers]
    feats = vgg_features_rgb(params, spec, G, layers, config.pooling)
    return losses.total_cost(
        targets["content"], targets["style"], feats[config.content_layer],
        {k: feats[k] for k in config.style_layers}, G,
        alpha=config.alpha, beta=config.beta, tv_weight=config.tv_weight,
        layer_weights=config.layer_weights, normalization=config.normalization,
    )


def fresh_state(tx: optax.GradientTransformation, G: Array) -> Any:
    """``tx.init(G)`` with every leaf in its own buffer (optax states may alias leaves,
    e.g. L-BFGS, which donation forbids)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tx.init(G))


class StepInfo(NamedTuple):
    """What one step reports: the cost at the start of the step and evaluations used."""

    cost: Array
    evals: Array


def make_step(tx: optax.GradientTransformation, spec: vgg.Preprocessing) -> Callable:
    """A pure update ``step(G, opt_state, params, targets, config) -> (G, opt_state, info)``.

    ``G <- clip(G + tx.update(grad J(G)), 0, 1)``. Only G is differentiated; params,
    targets and the loss weights in ``config`` are ordinary (traceable) arguments.
    ``info.cost`` is ``J`` at the incoming G. Jit it once (``jax.jit(step,
    donate_argnums=(0, 1))``) or use :func:`make_run` to fuse many steps.
    """

    def step(G: Array, opt_state: Any, params: vgg.Params, targets: Targets, config: Config):
        def value(g: Array) -> Array:
            return objective(g, params, targets, config, spec)[0]

        tree_get = optax.tree_utils.tree_get
        cached = tree_get(opt_state, "value", None)
        if cached is None:  # Adam, SGD: one evaluation per step
            j, grad = jax.value_and_grad(value)(G)
            evals = jnp.int32(1)
        else:
            # Line-search optimizers store J and its gradient at the accepted point; reuse
            # them unless the projection moved G (then the cache is marked stale below).
            j, grad = optax.value_and_grad_from_state(value)(G, state=opt_state)
            evals = (~jnp.isfinite(cached)).astype(jnp.int32)
        updates, opt_state = tx.update(grad, opt_state, G, value=j, grad=grad, value_fn=value)
        G_new = optax.apply_updates(G, updates)
        G = jnp.clip(G_new, 0.0, 1.0)
        if cached is not None:
            moved = jnp.any(G != G_new)
            stored = tree_get(opt_state, "value")
            opt_state = optax.tree_utils.tree_set(
                opt_state, value=jnp.where(moved, jnp.inf, stored).astype(stored.dtype))
            evals = evals + jnp.asarray(tree_get(opt_state, "num_linesearch_steps"), jnp.int32)
        return G, opt_state, StepInfo(j, evals)

    return step


def make_run_fn(tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int) -> Callable:
    """Pure ``run(G, opt_state, params, targets, config, n) -> (G, opt_state, costs, evals, done, ok)``.

    Runs up to ``n <= chunk`` steps in one compiled ``lax.while_loop`` (``n`` is traced,
    so one compilation serves every chunk length). ``costs (chunk,)`` holds J before
    each step (NaN past ``done``). A step whose cost is not finite is not applied and
    ends the loop, so the returned G is the last image with a finite cost.
    :func:`make_run` jits it; :mod:`nst_jax.grid` vmaps it over loss weights.
    """
    guarded = _guarded_step(make_step(tx, spec))

    def run(G, opt_state, params, targets, config, n):
        def cond(c):
            i, _, _, _, _, ok = c
            return (i < n) & ok

        def body(c):
            i, G, s, costs, evals, _ = c
            G, s, cost, ev, ok = guarded(G, s, jnp.bool_(True), params, targets, config)
            return i + ok.astype(jnp.int32), G, s, costs.at[i].set(cost), evals + ev, ok

        init = (jnp.int32(0), G, opt_state, jnp.full((chunk,), jnp.nan, jnp.float32),
                jnp.int32(0), jnp.bool_(True))
        done, G, opt_state, costs, evals, ok = lax.while_loop(cond, body, init)
        return G, opt_state, costs, evals, done, ok

    return run


def _guarded_step(step: Callable) -> Callable:
    """``step`` that is not applied when ``ok`` is False or its cost is not finite.

    ``(G, s, ok, ...) -> (G, s, cost, evals, ok)``; a rejected step returns the
    incoming G and state, so G stays the last image with a finite cost.
    """

    def guarded(G, s, ok, params, targets, config):
        G2, s2, info = step(G, s, params, targets, config)
        ok = ok & jnp.isfinite(info.cost)
        G, s = jax.tree.map(lambda a, b: jnp.where(ok, a, b), (G2, s2), (G, s))
        return G, s, info.cost, jnp.where(ok, info.evals, 0), ok

    return guarded


def make_run(
    tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int, *, fused: bool = True
) -> Callable:
    """A jitted ``run`` with :func:`make_run_fn`'s signature and results.

    ``fused=True``: :func:`make_run_fn` jitted once, G and the optimizer state donated.
    ``fused=False``: a host loop of ``n`` calls of one jitted (donating) guarded step,
    dispatched asynchronously: the host syncs only when the caller reads the results,
    once per chunk. Measured on XLA:CPU (``benchmarks/bench_step.py``), the fused
    loop is 10-15% faster per step for Adam, while L-BFGS, whose zoom line search is
    itself a while loop, runs 1.1-2x slower nested in another loop, so the driver
    uses ``fused=False`` for L-BFGS.
    """
    if fused:
        return jax.jit(make_run_fn(tx, spec, chunk), donate_argnums=(0, 1))
    guarded = jax.jit(_guarded_step(make_step(tx, spec)), donate_argnums=(0, 1))

    def run(G, opt_state, params, targets, config, n):
        ok = jnp.bool_(True)
        costs, evals = [], []
        for _ in range(int(n)):
            G, opt_state, cost, ev, ok = guarded(G, opt_state, ok, params, targets, config)
            costs.append(cost)
            evals.append(ev)
        c = jnp.stack(costs)
        ok_steps = jnp.cumprod(jnp.isfinite(c)).astype(bool)
        done = jnp.sum(ok_steps).astype(jnp.int32)
        c = jnp.concatenate([jnp.where(jnp.arange(len(costs)) <= done, c, jnp.nan),
                             jnp.full((chunk - len(costs),), jnp.nan, jnp.float32)])
        return G, opt_state, c, jnp.sum(jnp.stack(evals)), done, ok

    return run


# ----------------------------------------------------------------------------- driver


@functools.lru_cache(maxsize=16)
def _compiled(
    optimizer: str, learning_rate: float, lbfgs_history: int, spec: vgg.Preprocessing, chunk: int
) -> tuple[optax.GradientTransformation, Callable, Callable]:
    """The optimizer, the jitted run and the jitted cost measurement, built once per
    structure so repeated :func:`stylize` calls with the same settings and image size
    reuse the compiled programs."""
    tx = make_optimizer(Config(optimizer=optimizer, learning_rate=learning_rate,
                               lbfgs_history=lbfgs_history))
    run = make_run(tx, spec, chunk, fused=optimizer != "lbfgs")
    measure = jax.jit(lambda g, p, t, c: objective(g, p, t, c, spec)[1])
    return tx, run, measure


@dataclasses.dataclass
class Progress:
    """One report of :func:`iterate`."""

    step: int                    # steps done so far
    image: np.ndarray            # G, (H, W, 3) float32 in [0, 1]
    costs: dict[str, float]      # total/content/style/tv at ``image`` (unweighted terms)
    history: np.ndarray          # J before each step so far, (step,)
    evals: int                   # cost+gradient evaluations so far (L-BFGS: > steps)
    compile_s: float             # time of the first call (compilation included)
    run_s: float                 # time in compiled iterations after the first call
    finished: bool
    error: str | None = None     # set when a non-finite cost stopped the run


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
) -> Iterator[Progress]:
    """Run the optimisation, yielding a :class:`Progress` every ``config.report_every`` steps.

    The driver syncs with the host only between chunks. Stop early by leaving the loop;
    the last yielded ``Progress.image`` is a complete image.
    """
    config = config.validate(vgg.arch_of(params))
    content_rgb = jnp.asarray(content_rgb, jnp.float32)
    if content_rgb.ndim != 3 or content_rgb.shape[-1] != 3:
        raise ValueError(f"content_rgb: expected shape (H, W, 3), got {content_rgb.shape}")
    deepest = max(
        vgg.layer_names(vgg.arch_of(params)).index(x)
        for x in (config.content_layer, *config.style_layers)
    )
    need = vgg.min_image_size(vgg.layer_names(vgg.arch_of(params))[deepest])
    for what, img in [("content", content_rgb)] + [
        ("style", s) for s in ([style_rgb] if hasattr(style_rgb, "ndim") else style_rgb)
    ]:
        if min(img.shape[:2]) < need:
            raise ValueError(
                f"{what} image {img.shape[1]}x{img.shape[0]} is too small: the deepest layer "
                f"used needs at least {need}x{need} pixels"
            )
    key = jax.random.key(0) if key is None else key
    targets = compute_targets(params, spec, content_rgb, style_rgb, config, style_blend)
    tx, run, measure = _compiled(config.optimizer, config.learning_rate, config.lbfgs_history,
                                 spec, min(config.report_every, config.iterations))
    G = init_image(content_rgb, config, key=key) if init is None else jnp.asarray(init, jnp.float32)
    if G.shape != content_rgb.shape:
        raise ValueError(f"init: expected shape {content_rgb.shape}, got {G.shape}")
    opt_state = fresh_state(tx, G)
    chunk = min(config.report_every, config.iterations)
    hist: list[np.ndarray] = []
    done = evals = 0
    compile_s = run_s = 0.0
    while done < config.iterations:
        n = min(chunk, config.iterations - done)
        t0 = time.perf_counter()
        G, opt_state, costs, n_evals, n_done, ok = run(G, opt_state, params, targets, config,
                                                       jnp.int32(n))
        n_done = int(n_done)  # host sync once per chunk
        dt = time.perf_counter() - t0
        if done == 0:
            compile_s = dt
        else:
            run_s += dt
        done += n_done
        evals += int(n_evals)
        hist.append(np.asarray(costs)[:n_done])
        error = None if bool(ok) else f"the cost became non-finite at step {done + 1}"
        image = np.asarray(G)
        c = {k: float(v) for k, v in measure(G, params, targets, config).items()}
        finished = done >= config.iterations or error is not None
        yield Progress(done, image, c, np.concatenate(hist), evals, compile_s, run_s,
                       finished, error)
        if error is not None:
            return


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
) -> tuple[np.ndarray, dict[str, Any]]:
    """Style-transfer ``content_rgb`` in the style of ``style_rgb``.

    Args:
      content_rgb: C, ``(H, W, 3)`` RGB in [0, 1]; G has its size.
      style_rgb: S, ``(H', W', 3)``, or a sequence of style images (blended).
      params, spec: from :func:`nst_jax.load_weights`.
      config: see :class:`nst_jax.Config`.
      key: ``jax.random.key`` for the initial noise (default ``key(0)``).
      callback: called with each :class:`Progress`; return ``True`` to stop early.

    Returns:
      ``(image (H, W, 3) float32 in [0, 1], history)``; ``history`` has ``"total"`` (J
      before each step), the final ``"costs"``, ``"evals"``, ``"steps"`` and timings.

    Example:
      >>> params, spec = load_weights("weights/vgg16.h5")
      >>> image, hist = stylize(content, style, params, spec, config=Config(iterations=200))
    """
    last = None
    for last in iterate(content_rgb, style_rgb, params, spec, config=config, key=key,
                        style_blend=style_blend):
        if callback is not None and callback(last):
            break
    assert last is not None
    if last.error is not None:
        raise FloatingPointError(last.error)
    return last.image, {
        "total": last.history, "costs": last.costs, "evals": last.evals,
        "steps": last.step, "compile_s": last.compile_s, "run_s": last.run_s,
    }


def evaluate(
    image: Array, content_rgb: Array, style_rgb: Array, params: vgg.Params,
    spec: vgg.Preprocessing, config: Config = Config(),
) -> dict[str, float]:
    """The cost components of ``image`` for a given content/style pair (for reports)."""
    config = config.validate(vgg.arch_of(params))
    targets = compute_targets(params, spec, content_rgb, style_rgb, config)
    _, c = objective(jnp.asarray(image, jnp.float32), params, targets, config, spec)
    return {k: float(v) for k, v in c.items()}
