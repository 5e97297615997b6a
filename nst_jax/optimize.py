"""[pure + a thin driver] Optimise the pixels of G.

Data flow::

    targets = compute_targets(params, spec, C, S, config)        # once, outside any loop
    step    = make_step(tx, spec)                                  # pure; jit it once
    run     = make_run(tx, spec, chunk)                             # jitted: while_loop of steps
    for progress in iterate(C, S, params, spec, config=..., key=...):  # thin driver
        ...

The optimised variable X is G in RGB pixel space, ``(H, W, 3)`` in [0, 1] (or, with
``preserve_color="luminance"``, its luminance ``(H, W, 1)``); preprocessing to the
network's input happens inside the loss, so learning rates are in pixel units and the
box constraint is simple: Adam and SGD clip X to [0, 1] after every update
(projected gradient descent); L-BFGS adds a quadratic penalty on the distance to the
box (see :func:`make_step` for why and the measurement), and results are clipped.

The loop carries a :class:`LoopState`: the optimizer state, the running average of X
(``avg_decay``), the step count and a window of recent costs (``tol``), so iterate
averaging and convergence stopping happen inside the compiled loop.
"""

from __future__ import annotations

import contextlib
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

from nst_jax import color, losses, vgg
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
    as jcjohnson/neural-style blends Gram targets. The images are the network's view
    (see :func:`network_inputs` for the colour modes).

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
    w = jnp.asarray(w / w.sum(), jnp.float32)
    return _targets(params, jnp.asarray(content_rgb, jnp.float32),
                    [jnp.asarray(s, jnp.float32) for s in styles], w, config, spec)


@functools.partial(jax.jit, static_argnums=(5,))
def _targets(params, content, styles, w, config, spec) -> Targets:
    with precision_scope(config):
        return _targets_body(params, content, styles, w, config, spec)


def _targets_body(params, content, styles, w, config, spec) -> Targets:
    feats = vgg_features_rgb(params, spec, content, [config.content_layer], config.pooling)
    style_t = {layer: 0.0 for layer in config.style_layers}
    for k, s in enumerate(styles):
        sf = vgg_features_rgb(params, spec, s, config.style_layers, config.pooling)
        for layer in config.style_layers:
            style_t[layer] = style_t[layer] + w[k] * losses.style_target(sf[layer])
    return {"content": feats[config.content_layer], "style": style_t}


def network_inputs(
    content_rgb: Array, style_rgbs: Sequence[Array], config: Config
) -> tuple[Array, list[Array]]:
    """What the network sees of C and S under ``config.preserve_color``.

    ``none``: the images. ``histogram``: S with C's colour mean and covariance
    (:func:`color.match_color`). ``luminance``: grey images of the luminance of C and of
    S, S's luminance matched to C's mean and std (Gatys et al. 2017, section 4.1).
    """
    c = jnp.asarray(content_rgb, jnp.float32)
    ss = [jnp.asarray(s, jnp.float32) for s in style_rgbs]
    if config.preserve_color == "histogram":
        return c, [jnp.clip(color.match_color(s, c), 0.0, 1.0) for s in ss]
    if config.preserve_color == "luminance":
        yc = color.luminance(c)
        return color.grey(yc), [
            color.grey(jnp.clip(color.match_luminance(color.luminance(s), yc), 0.0, 1.0))
            for s in ss]
    return c, ss


def to_variable(rgb: Array, config: Config) -> Array:
    """An RGB image as the optimised variable X: itself, or its luminance."""
    return color.luminance(rgb) if config.preserve_color == "luminance" else rgb


def network_image(X: Array, config: Config) -> Array:
    """The RGB image the network sees for the variable X."""
    return color.grey(X) if config.preserve_color == "luminance" else X


def output_image(X: Array, content_rgb: Array, config: Config) -> Array:
    """The RGB result for the variable X, in [0, 1].

    Luminance mode puts X's luminance on C's chroma (so C's I, Q are untouched);
    ``original_colors`` does the same post hoc for an RGB result.
    """
    if config.preserve_color == "luminance":
        rgb = color.with_chroma(X, content_rgb)
    elif config.original_colors:
        rgb = color.original_colors(X, content_rgb)
    else:
        rgb = X
    return jnp.clip(rgb, 0.0, 1.0)


def precision_scope(config: Config) -> contextlib.AbstractContextManager:
    """The matmul/conv precision of ``config.precision`` for everything traced inside.

    ``f32`` and ``bf16`` leave XLA's default (``None``): exact float32 on CPU, but TF32
    convolutions on NVIDIA GPUs since Ampere and single bf16 passes on TPUs.
    ``highest`` sets ``jax.default_matmul_precision("highest")``: true float32 on
    every backend (slower on GPU/TPU). The Gram matrices are computed at
    ``Precision.HIGHEST`` in every mode (:func:`nst_jax.losses.gram_matrix`).
    Used around the step (so the backward pass is traced under it too) and the targets.
    """
    if config.precision == "highest":
        return jax.default_matmul_precision("highest")
    return contextlib.nullcontext()


def vgg_features_rgb(
    params: vgg.Params, spec: vgg.Preprocessing, rgb: Array, layers: Sequence[str], pooling: str,
    dtype: Any = jnp.float32,
) -> dict[str, Array]:
    """:func:`vgg.vgg_features` of an RGB image in [0, 1], computed in ``dtype``."""
    x = vgg.preprocess(jnp.asarray(rgb, jnp.float32), spec).astype(dtype)
    return vgg.vgg_features(params, x, layers, pooling=pooling)


def objective(
    X: Array, params: vgg.Params, targets: Targets, config: Config, spec: vgg.Preprocessing
) -> tuple[Array, dict[str, Array]]:
    """``J(G)`` and its components for the variable X (RGB ``(H, W, 3)``, or luminance
    ``(H, W, 1)`` in luminance mode); see :func:`losses.total_cost`."""
    with precision_scope(config):
        return _objective(X, params, targets, config, spec)


def _objective(
    X: Array, params: vgg.Params, targets: Targets, config: Config, spec: vgg.Preprocessing
) -> tuple[Array, dict[str, Array]]:
    G = network_image(X, config)
    layers = [config.content_layer, *config.style_layers]
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    feats = vgg_features_rgb(params, spec, G, layers, config.pooling, dtype)
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


_with_backward_kernels = jax.jit(vgg.with_backward_kernels)


class StepInfo(NamedTuple):
    """What one step reports: the cost at the start of the step and evaluations used."""

    cost: Array
    evals: Array


def box_penalty(X: Array) -> Array:
    """``sum(relu(X - 1)^2 + relu(-X)^2)``: squared distance of X to the box [0, 1]."""
    return jnp.sum(jnp.square(jax.nn.relu(X - 1.0)) + jnp.square(jax.nn.relu(-X)))


def make_step(tx: optax.GradientTransformation, spec: vgg.Preprocessing) -> Callable:
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
    penalty for L-BFGS). Jit it once (``jax.jit(step, donate_argnums=(0, 1))``) or use
    :func:`make_run` to fuse many steps.
    """

    def step(X: Array, opt_state: Any, params: vgg.Params, targets: Targets, config: Config):
        with precision_scope(config):
            return _step(X, opt_state, params, targets, config)

    def _step(X: Array, opt_state: Any, params: vgg.Params, targets: Targets, config: Config):
        tree_get = optax.tree_utils.tree_get
        linesearch = tree_get(opt_state, "value", None) is not None

        def value(x: Array) -> Array:
            j = objective(x, params, targets, config, spec)[0]
            return j + config.box_weight * box_penalty(x) if linesearch else j

        if not linesearch:
            j, grad = jax.value_and_grad(value)(X)
            updates, opt_state = tx.update(grad, opt_state, X)
            X = jnp.clip(optax.apply_updates(X, updates), 0.0, 1.0)
            return X, opt_state, StepInfo(j, jnp.int32(1))
        fresh = ~jnp.isfinite(tree_get(opt_state, "value"))
        j, grad = optax.value_and_grad_from_state(value)(X, state=opt_state)
        updates, opt_state = tx.update(grad, opt_state, X, value=j, grad=grad, value_fn=value)
        evals = fresh.astype(jnp.int32) + jnp.asarray(
            tree_get(opt_state, "num_linesearch_steps"), jnp.int32)
        return optax.apply_updates(X, updates), opt_state, StepInfo(j, evals)

    return step


class LoopState(NamedTuple):
    """What the loop carries besides X (a pytree; checkpointed as a whole)."""

    opt: Any          # the optax state
    avg: Array        # running average of X (zeros when avg_decay == 0)
    t: Array          # steps applied at this scale, int32
    recent: Array     # (tol_window,) ring buffer of recent costs
    converged: Array  # bool: the tolerance test passed


def init_loop_state(tx: optax.GradientTransformation, X: Array, config: Config) -> LoopState:
    """A fresh :class:`LoopState` for X (every leaf in its own buffer, for donation).

    The cost ring buffer starts at zeros: a slot is read only ``tol_window`` steps after
    it was written. (Not NaN: a multi-host ``device_put`` checks that every process
    passes equal values, and NaN != NaN.)
    """
    return LoopState(fresh_state(tx, X), jnp.zeros_like(X), jnp.int32(0),
                     jnp.zeros((config.tol_window,), jnp.float32), jnp.bool_(False))


def averaged(X: Array, ls: LoopState, config: Config) -> Array:
    """The result X: the bias-corrected average ``avg_t / (1 - d^t)`` when
    ``avg_decay = d > 0`` (X itself before the first step), else X."""
    d = config.avg_decay
    if d == 0.0:
        return X
    corr = 1.0 - jnp.power(jnp.float32(d), ls.t.astype(jnp.float32))
    return jnp.where(ls.t > 0, ls.avg / jnp.maximum(corr, 1e-12), X)


def _guarded_step(step: Callable) -> Callable:
    """One loop step with the bookkeeping that must live inside the compiled loop.

    ``(X, ls, ok, params, targets, config) -> (X, ls, cost, evals, ok, applied)``. The
    update is applied only while ``ok`` and not converged, and only if its cost is
    finite: a rejected step returns the incoming X and state, so X stays the last image
    with a finite cost. Applied steps update the running average
    ``avg <- d avg + (1 - d) X`` and the cost window; the tolerance test
    ``|J_t - J_{t-w}| < tol |J_{t-w}|`` sets ``converged``.
    """

    def guarded(X, ls, ok, params, targets, config):
        X2, opt2, info = step(X, ls.opt, params, targets, config)
        ok = ok & jnp.isfinite(info.cost)
        applied = ok & ~ls.converged
        X, opt = jax.tree.map(lambda a, b: jnp.where(applied, a, b), (X2, opt2), (X, ls.opt))
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
        return X, ls, cost, jnp.where(applied, info.evals, 0), ok, applied

    return guarded


def make_run_fn(tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int) -> Callable:
    """Pure ``run(X, ls, params, targets, config, n) -> (X, ls, costs, evals, done, ok)``.

    Runs up to ``n <= chunk`` steps in one compiled ``lax.while_loop`` (``n`` is traced,
    so one compilation serves every chunk length), stopping early when a cost is not
    finite (``ok`` False; X is the last image with a finite cost) or the tolerance test
    passes (``ls.converged``). ``costs (chunk,)`` holds J before each applied step, NaN
    after. :func:`make_run` jits it; :mod:`nst_jax.grid` vmaps it over loss weights.
    """
    guarded = _guarded_step(make_step(tx, spec))

    def run(X, ls, params, targets, config, n):
        params = vgg.with_backward_kernels(params)  # flipped once per call, not per step

        def cond(c):
            i, _, ls, _, _, ok = c
            return (i < n) & ok & ~ls.converged

        def body(c):
            i, X, ls, costs, evals, ok = c
            X, ls, cost, ev, ok, applied = guarded(X, ls, ok, params, targets, config)
            return (i + applied.astype(jnp.int32), X, ls, costs.at[i].set(cost), evals + ev, ok)

        init = (jnp.int32(0), X, ls, jnp.full((chunk,), jnp.nan, jnp.float32),
                jnp.int32(0), jnp.bool_(True))
        done, X, ls, costs, evals, ok = lax.while_loop(cond, body, init)
        return X, ls, costs, evals, done, ok

    return run


def make_run(
    tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int, *, fused: bool = True
) -> Callable:
    """A jitted ``run`` with :func:`make_run_fn`'s signature and results.

    ``fused=True``: :func:`make_run_fn` jitted once, X and the loop state donated.
    ``fused=False``: a host loop of ``n`` calls of one jitted (donating) guarded step,
    dispatched asynchronously: the host syncs only when the caller reads the results,
    once per chunk. Measured on XLA:CPU (``benchmarks/bench_step.py``), the fused
    loop is 2-9% faster per step for Adam, while L-BFGS, whose zoom line search is
    itself a while loop, was 6% slower nested in another loop over a real 100-iteration
    run (identical images), so the driver uses ``fused=False`` for L-BFGS.
    """
    if fused:
        return jax.jit(make_run_fn(tx, spec, chunk), donate_argnums=(0, 1))
    guarded = jax.jit(_guarded_step(make_step(tx, spec)), donate_argnums=(0, 1))

    def run(X, ls, params, targets, config, n):
        ok = jnp.bool_(True)
        costs, evals, applied = [], [], []
        for _ in range(int(n)):
            X, ls, cost, ev, ok, ap = guarded(X, ls, ok, params, targets, config)
            costs.append(cost)
            evals.append(ev)
            applied.append(ap)
        done = jnp.sum(jnp.stack(applied)).astype(jnp.int32)
        c = jnp.concatenate([jnp.stack(costs), jnp.full((chunk - len(costs),), jnp.nan)])
        return X, ls, c, jnp.sum(jnp.stack(evals)), done, ok

    return run


# ----------------------------------------------------------------------------- driver


@functools.lru_cache(maxsize=16)
def _compiled(
    optimizer: str, learning_rate: float, lbfgs_history: int, spec: vgg.Preprocessing, chunk: int
) -> tuple[optax.GradientTransformation, Callable, Callable]:
    """The optimizer, the jitted run and the jitted result/cost measurement, built once
    per structure so repeated :func:`stylize` calls with the same settings and image
    size reuse the compiled programs."""
    tx = make_optimizer(Config(optimizer=optimizer, learning_rate=learning_rate,
                               lbfgs_history=lbfgs_history))
    run = make_run(tx, spec, chunk, fused=optimizer != "lbfgs")

    @jax.jit
    def measure(X, ls, params, targets, content, config):
        Xr = averaged(X, ls, config)
        return Xr, output_image(Xr, content, config), objective(Xr, params, targets, config, spec)[1]

    return tx, run, measure


def scale_sizes(height: int, width: int, config: Config) -> list[tuple[int, int]]:
    """``(H, W)`` of each coarse-to-fine scale, the last one the full size.

    Longest sides grow geometrically from ``min_size`` (default: full / 2^(scales-1)).
    """
    longest = max(height, width)
    n = config.scales
    if n == 1:
        return [(height, width)]
    lo = config.min_size or max(1, round(longest / 2 ** (n - 1)))
    lo = min(lo, longest)
    sides = [round(lo * (longest / lo) ** (i / (n - 1))) for i in range(n)]
    return [(max(1, round(height * s / longest)), max(1, round(width * s / longest))) for s in sides]


def check_sizes(
    content_shape: Sequence[int],
    style_shapes: Sequence[Sequence[int]],
    arch: str,
    config: Config,
    names: Sequence[str] = ("content image", "style image"),
) -> None:
    """Raise ``ValueError`` when C or an S is too small for the deepest layer used.

    Sizes are checked at the first coarse-to-fine scale (styles scale with C). ``names``
    are the labels used in the message (file names, in the CLI); the last one repeats.
    """
    layers = vgg.layer_names(arch)
    deepest = layers[max(layers.index(x) for x in (config.content_layer, *config.style_layers))]
    need = vgg.min_image_size(deepest)
    first = scale_sizes(content_shape[0], content_shape[1], config)[0]
    ratio = first[0] / content_shape[0]
    for i, shape in enumerate([content_shape, *style_shapes]):
        h, w = (round(d * ratio) for d in shape[:2])
        if min(h, w) < need:
            where = " at the first scale" if config.scales > 1 else ""
            raise ValueError(
                f"{names[min(i, len(names) - 1)]}: {w}x{h}{where} is too small for {deepest}: "
                f"the minimum is {need}x{need} pixels")


def resize(rgb: Array, hw: tuple[int, int]) -> Array:
    """Antialiased bilinear resize of ``(H, W, C)`` to ``hw``."""
    if tuple(rgb.shape[:2]) == tuple(hw):
        return jnp.asarray(rgb, jnp.float32)
    return jax.image.resize(jnp.asarray(rgb, jnp.float32), (*hw, rgb.shape[-1]), "linear",
                            antialias=True)


@dataclasses.dataclass
class Progress:
    """One report of :func:`iterate`."""

    step: int                    # steps done so far, all scales together
    image: np.ndarray            # the result so far, (H_s, W_s, 3) float32 in [0, 1]
    costs: dict[str, float]      # total/content/style/tv at ``image`` (unweighted terms)
    history: np.ndarray          # J before each step so far, (step,)
    evals: int                   # cost+gradient evaluations so far (L-BFGS: > steps)
    compile_s: float             # time of the first call of each scale (compilation included)
    run_s: float                 # time in compiled iterations after those first calls
    run_steps: int               # steps taken in the calls that ``run_s`` times
    finished: bool
    error: str | None = None     # set when a non-finite cost stopped the run
    converged: bool = False      # the tolerance test stopped this scale early
    scale: int = 0               # index of the current coarse-to-fine scale
    snapshot: dict[str, Any] | None = None  # with snapshots=True: what resume= needs


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
) -> Iterator[Progress]:
    """Run the optimisation, yielding a :class:`Progress` every ``config.report_every`` steps.

    The driver syncs with the host only between chunks. Stop early by leaving the loop;
    the last yielded ``Progress.image`` is a complete image. With ``snapshots=True``
    (a host copy of X and the loop state at each report), ``Progress.snapshot`` (a
    pytree of arrays and ints) passed back as ``resume=`` continues the run exactly
    where it was: same chunks, same compiled programs, so the final image is bitwise
    that of an uninterrupted run on CPU.
    """
    config = config.validate(vgg.arch_of(params))
    content_rgb = jnp.asarray(content_rgb, jnp.float32)
    if content_rgb.ndim != 3 or content_rgb.shape[-1] != 3:
        raise ValueError(f"content_rgb: expected shape (H, W, 3), got {content_rgb.shape}")
    styles = [style_rgb] if hasattr(style_rgb, "ndim") else list(style_rgb)
    check_sizes(content_rgb.shape, [s.shape for s in styles], vgg.arch_of(params), config)
    params = _with_backward_kernels(params)  # once, for every step and scale
    sizes = scale_sizes(*content_rgb.shape[:2], config)
    key = jax.random.key(0) if key is None else key
    tx, run, measure = _compiled(config.optimizer, config.learning_rate, config.lbfgs_history,
                                 spec, min(config.report_every, config.iterations))
    chunk = min(config.report_every, config.iterations)
    hist: list[np.ndarray] = []
    total_done = evals = 0
    compile_s = run_s = 0.0
    run_steps = 0
    start_scale, start_step = 0, 0
    if resume is not None:
        start_scale, start_step = int(resume["scale"]), int(resume["step_in_scale"])
        hist = [np.asarray(resume["history"], np.float32)]
        total_done, evals = int(resume["steps"]), int(resume["evals"])
        key = jax.random.wrap_key_data(jnp.asarray(resume["key"], jnp.uint32))
    Xr = None
    for si in range(start_scale, len(sizes)):
        hw = sizes[si]
        c_s = resize(content_rgb, hw)
        s_s = [resize(s, tuple(max(1, round(d * hw[0] / content_rgb.shape[0]))
                               for d in s.shape[:2])) for s in styles]
        c_net, s_net = network_inputs(c_s, s_s, config)
        targets = compute_targets(params, spec, c_net, s_net, config, style_blend)
        if resume is not None and si == start_scale:
            X = jnp.asarray(resume["X"], jnp.float32)
            template = init_loop_state(tx, X, config)
            leaves = list(resume["loop_state"])
            t_leaves, treedef = jax.tree.flatten(template)
            if len(leaves) != len(t_leaves) or any(
                    np.shape(a) != np.shape(b) for a, b in zip(leaves, t_leaves, strict=True)):
                raise ValueError("resume: the snapshot's optimizer state does not match these "
                                 "settings (optimizer, image size or tol_window differ)")
            ls = jax.tree.unflatten(treedef, [jnp.array(v, dtype=t.dtype)
                                              for v, t in zip(leaves, t_leaves, strict=True)])
            done = start_step
        else:
            if si > 0:  # coarse-to-fine: the previous scale's result, upsampled
                X = resize(Xr, hw)
            elif init is None:
                X = to_variable(init_image(c_s, config, key=key), config)
            else:
                X = to_variable(resize(jnp.asarray(init, jnp.float32), hw), config)
            ls = init_loop_state(tx, X, config)
            done = 0
        first_call = True
        while True:
            if done >= config.iterations or bool(ls.converged):
                break
            n = min(chunk, config.iterations - done)
            t0 = time.perf_counter()
            X, ls, costs, n_evals, n_done, ok = run(X, ls, params, targets, config, jnp.int32(n))
            n_done = int(n_done)  # host sync once per chunk
            dt = time.perf_counter() - t0
            if first_call:
                compile_s += dt
                first_call = False
            else:
                run_s += dt
                run_steps += n_done
            done += n_done
            total_done += n_done
            evals += int(n_evals)
            hist.append(np.asarray(costs)[:n_done])
            error = None if bool(ok) else f"the cost became non-finite at step {total_done + 1}"
            converged = bool(ls.converged)
            Xr, image, c = measure(X, ls, params, targets, c_s, config)
            last_scale = si == len(sizes) - 1
            finished = error is not None or (last_scale and (
                done >= config.iterations or converged))
            history = np.concatenate(hist)
            snapshot = None if not snapshots else {
                "X": np.asarray(X), "loop_state": [np.asarray(v) for v in jax.tree.leaves(ls)],
                "scale": si, "step_in_scale": done, "steps": total_done, "evals": evals,
                "history": history, "key": np.asarray(jax.random.key_data(key)),
            }
            yield Progress(total_done, np.asarray(image), {k: float(v) for k, v in c.items()},
                           history, evals, compile_s, run_s, run_steps, finished, error,
                           converged, si, snapshot)
            if error is not None:
                return
        if Xr is None:  # resumed exactly at the end of a scale
            Xr = averaged(X, ls, config)


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
      style_blend: weights of several style images (default: equal).
      callback: called with each :class:`Progress`; return ``True`` to stop early.

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
                        style_blend=style_blend):
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


def evaluate(
    image: Array, content_rgb: Array, style_rgb: Array, params: vgg.Params,
    spec: vgg.Preprocessing, config: Config = Config(),
) -> dict[str, float]:
    """The cost components of an RGB ``image`` for a content/style pair (for reports)."""
    config = config.validate(vgg.arch_of(params))
    c_net, s_net = network_inputs(content_rgb, [style_rgb], config)
    targets = compute_targets(params, spec, c_net, s_net, config)
    X = to_variable(jnp.asarray(image, jnp.float32), config)
    _, c = objective(X, params, targets, config, spec)
    return {k: float(v) for k, v in c.items()}


__all__ = [
    "LoopState", "Progress", "StepInfo", "averaged", "compute_targets", "evaluate",
    "init_image", "init_loop_state", "iterate", "make_optimizer", "make_run", "make_run_fn",
    "make_step", "network_inputs", "objective", "output_image", "scale_sizes", "stylize",
]
