"""The jitted step, the fused run loop and the stylize driver, on tiny synthetic weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rand_image

from nst_jax import losses, vgg
from nst_jax.config import Config
from nst_jax.optimize import (
    compute_targets,
    init_image,
    iterate,
    make_optimizer,
    make_step,
    objective,
    stylize,
)

SPEC = vgg.CAFFE
# Tiny synthetic nets have tiny activations: weights that balance the two terms.
TINY = Config(alpha=1.0, beta=1e-2, iterations=20, report_every=10, learning_rate=0.05)


@pytest.fixture(scope="module")
def images():
    return rand_image(32, 32, 1), rand_image(32, 32, 2)


def test_targets_match_direct_features(params16, images):
    C, S = images
    cfg = TINY.validate("vgg16")
    t = compute_targets(params16, SPEC, C, S, cfg)
    fc = vgg.vgg_features(params16, vgg.preprocess(jnp.asarray(C), SPEC), ["conv4_2"])
    # jit (targets) vs op-by-op (here): float32 rounding of 10 fused convs; up to 1.7e-5
    # relative on jax 0.8.0
    np.testing.assert_allclose(t["content"], fc["conv4_2"], rtol=5e-5)
    fs = vgg.vgg_features(params16, vgg.preprocess(jnp.asarray(S), SPEC), ["conv3_1"])
    np.testing.assert_allclose(t["style"]["conv3_1"], losses.style_target(fs["conv3_1"]), rtol=1e-5)


def test_style_blend_one_zero_equals_single_style(params16, images):
    C, S = images
    cfg = TINY.validate("vgg16")
    other = rand_image(24, 40, 3)
    t1 = compute_targets(params16, SPEC, C, S, cfg)
    t2 = compute_targets(params16, SPEC, C, [S, other], cfg, style_blend=[1.0, 0.0])
    for k in cfg.style_layers:
        np.testing.assert_allclose(t2["style"][k], t1["style"][k], rtol=1e-6)
    with pytest.raises(ValueError, match="style_blend: expected 2 non-negative weights"):
        compute_targets(params16, SPEC, C, [S, other], cfg, style_blend=[1.0])


def test_objective_grad_matches_finite_differences(params16):
    C, S = rand_image(16, 16, 4), rand_image(16, 16, 5)
    cfg = Config(alpha=1.0, beta=1e-2, tv_weight=0.5).validate("vgg16")
    t = compute_targets(params16, SPEC, C, S, cfg)
    G = np.asarray(rand_image(16, 16, 6), np.float64)
    f = jax.jit(lambda g: objective(g, params16, t, cfg, SPEC)[0])
    grad_fn = jax.grad(lambda g: objective(g, params16, t, cfg, SPEC)[0])
    grad = np.asarray(grad_fn(jnp.asarray(G, jnp.float32)), np.float64)
    eps = 1e-3
    rng = np.random.default_rng(1)
    # Directional derivatives along random directions (central differences): robust to
    # the ReLU kinks a single coordinate may sit on, exact to O(eps^2) elsewhere.
    for _ in range(4):
        v = rng.standard_normal(G.shape)
        v /= np.linalg.norm(v)
        fd = (float(f(jnp.asarray(G + eps * v, jnp.float32)))
              - float(f(jnp.asarray(G - eps * v, jnp.float32)))) / (2 * eps)
        np.testing.assert_allclose(np.vdot(grad, v), fd, rtol=2e-2, atol=1e-3 * np.linalg.norm(grad))


def _step_setup(params, images, cfg=TINY):
    """(cfg, targets, tx, step, G0) for a tiny problem."""
    C, S = images
    cfg = cfg.validate("vgg16")
    tx = make_optimizer(cfg)
    G = init_image(jnp.asarray(C), cfg, key=jax.random.key(0))
    return cfg, compute_targets(params, SPEC, C, S, cfg), tx, make_step(tx, SPEC), G


def test_step_jit_equals_no_jit(params16, images):
    cfg, t, tx, step, G = _step_setup(params16, images)
    a = step(G, tx.init(G), params16, t, cfg)
    b = jax.jit(step)(G, tx.init(G), params16, t, cfg)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[2].cost, b[2].cost, rtol=1e-5)


def test_step_vmap_over_alpha_beta_equals_loop(params16, images):
    cfg, t, tx, step, G = _step_setup(params16, images)
    alphas, betas = jnp.array([1.0, 2.0, 0.5]), jnp.array([1e-2, 1e-3, 1e-1])
    batched = jax.vmap(lambda a, b: step(G, tx.init(G), params16, t, cfg.replace(alpha=a, beta=b)))(
        alphas, betas)
    for i in range(3):
        one = step(G, tx.init(G), params16, t, cfg.replace(alpha=float(alphas[i]), beta=float(betas[i])))
        np.testing.assert_allclose(batched[0][i], one[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opt", ["adam", "lbfgs", "sgd"])
def test_cost_decreases(params16, images, opt):
    C, S = images
    cfg = TINY.replace(optimizer=opt, learning_rate=0.05 if opt != "sgd" else 4e-6)
    img, hist = stylize(C, S, params16, SPEC, config=cfg, key=jax.random.key(0))
    assert img.shape == C.shape
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert hist["steps"] == 20
    assert hist["total"][-1] < 0.7 * hist["total"][0], hist["total"]
    if opt == "lbfgs":
        assert hist["evals"] > 20  # line-search evaluations are counted
    else:
        assert hist["evals"] == 20


def test_same_seed_same_image(params16, images):
    C, S = images
    cfg = TINY.replace(init="noise")
    a, _ = stylize(C, S, params16, SPEC, config=cfg, key=jax.random.key(3))
    b, _ = stylize(C, S, params16, SPEC, config=cfg, key=jax.random.key(3))
    c, _ = stylize(C, S, params16, SPEC, config=cfg, key=jax.random.key(4))
    np.testing.assert_array_equal(a, b)  # bitwise: the same program on the same input
    assert not np.array_equal(a, c)


def test_fused_run_equals_single_steps(params16, images):
    C, S = images
    cfg = TINY.replace(iterations=6, report_every=3).validate("vgg16")
    fused, hist = stylize(C, S, params16, SPEC, config=cfg, key=jax.random.key(0))
    t = compute_targets(params16, SPEC, C, S, cfg)
    tx = make_optimizer(cfg)
    step = jax.jit(make_step(tx, SPEC))
    G = init_image(jnp.asarray(C), cfg, key=jax.random.key(0))
    s = tx.init(G)
    costs = []
    for _ in range(6):
        G, s, info = step(G, s, params16, t, cfg)
        costs.append(float(info.cost))
    np.testing.assert_allclose(fused, G, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hist["total"], costs, rtol=1e-5)


def test_iterate_reports_every_chunk(params16, images):
    C, S = images
    reports = list(iterate(C, S, params16, SPEC, config=TINY.replace(iterations=25)))
    assert [r.step for r in reports] == [10, 20, 25]
    assert reports[-1].finished and not reports[0].finished
    assert len(reports[-1].history) == 25
    assert set(reports[-1].costs) == {"total", "content", "style", "tv"}


def test_callback_can_stop(params16, images):
    C, S = images
    seen = []
    _, hist = stylize(C, S, params16, SPEC, config=TINY.replace(iterations=100),
                      callback=lambda p: seen.append(p.step) or p.step >= 20)
    assert seen == [10, 20] and hist["steps"] == 20


def test_non_finite_cost_stops_and_keeps_last_finite_image(params16, images):
    C, S = images
    cfg = TINY.replace(alpha=float("inf"), iterations=10, report_every=5)
    reports = list(iterate(C, S, params16, SPEC, config=cfg))
    assert len(reports) == 1 and reports[0].error is not None
    assert "non-finite" in reports[0].error
    assert np.all(np.isfinite(reports[0].image))
    with pytest.raises(FloatingPointError, match="non-finite"):
        stylize(C, S, params16, SPEC, config=cfg)


@pytest.mark.parametrize("init", ["noise", "content", "content+noise"])
def test_init_modes(init):
    C = jnp.asarray(rand_image(8, 8))
    cfg = Config(init=init, noise_ratio=0.25)
    G = init_image(C, cfg, key=jax.random.key(0))
    noise = jax.random.uniform(jax.random.key(0), C.shape)
    want = {"noise": noise, "content": C, "content+noise": 0.75 * C + 0.25 * noise}[init]
    np.testing.assert_allclose(G, want, rtol=1e-6)


@pytest.mark.parametrize(("field", "value", "msg"), [
    ("optimizer", "rmsprop", "optimizer: expected one of"),
    ("init", "zeros", "init: expected one of"),
    ("iterations", 0, "iterations: expected a positive integer, got 0"),
    ("style_weights", (1.0,), "style_weights: expected 5 values"),
    ("content_layer", "conv9_9", "unknown layer 'conv9_9'"),
    ("noise_ratio", 1.5, r"noise_ratio: expected a value in \[0, 1\]"),
    ("beta", -1.0, "beta: expected >= 0, got -1.0"),
])
def test_config_validation(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        Config().replace(**{field: value}).validate("vgg16")


def test_too_small_image_is_refused(params16):
    with pytest.raises(ValueError, match=r"content image: 8x8 is too small for conv5_1: "
                                         r"the minimum is 16x16 pixels"):
        stylize(rand_image(8, 8), rand_image(32, 32), params16, SPEC, config=TINY)


@pytest.mark.slow
@pytest.mark.real_weights
def test_real_weights_style_cost_falls(real16):
    params, spec = real16
    C, S = rand_image(64, 64, 7), rand_image(64, 64, 8)
    # Smooth images (as photos are) rather than white noise.
    C = np.asarray(jax.image.resize(jnp.asarray(C[::8, ::8]), (64, 64, 3), "linear"))
    cfg = Config(iterations=50, report_every=25)
    img, hist = stylize(C, S, params, spec, config=cfg, key=jax.random.key(0))
    from nst_jax.optimize import evaluate

    start = evaluate(init_image(jnp.asarray(C), cfg, key=jax.random.key(0)), C, S, params, spec, cfg)
    assert hist["costs"]["style"] <= 0.2 * start["style"], (start, hist["costs"])
    assert np.abs(img - C).mean() > 0.02 and np.abs(img - S).mean() > 0.02


@pytest.mark.parametrize("opt", ["adam", "lbfgs"])
def test_stepwise_run_equals_fused(params16, images, opt):
    from nst_jax.optimize import init_loop_state, make_run

    C, S = images
    cfg = TINY.replace(optimizer=opt).validate("vgg16")
    t = compute_targets(params16, SPEC, C, S, cfg)
    tx = make_optimizer(cfg)
    outs = []
    for fused in (True, False):
        G = init_image(jnp.asarray(C), cfg, key=jax.random.key(0))
        outs.append(make_run(tx, SPEC, 5, fused=fused)(G, init_loop_state(tx, G, cfg), params16,
                                                       t, cfg, jnp.int32(4)))
    (Ga, _, ca, ea, da, oka), (Gb, _, cb, eb, db, okb) = outs
    np.testing.assert_allclose(Ga, Gb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ca, cb, rtol=1e-5)  # NaN at the unused 5th slot in both
    assert int(ea) == int(eb) and int(da) == int(db) == 4 and bool(oka) and bool(okb)


@pytest.mark.parametrize(("optimizer", "linesearch"),
                         [("adam", "zoom"), ("lbfgs", "zoom"), ("lbfgs", "none")])
def test_chunk_loop_has_a_static_trip_count_and_stopping_is_a_mask(params16, images, optimizer,
                                                                   linesearch):
    """The GPU/TPU form of the fused chunk is one loop of ``chunk`` iterations that XLA
    knows the count of (command buffers can capture it); stopping early (``n``, a
    non-finite cost, convergence) changes nothing the results show, and it equals the
    CPU's while loop and the host loop, for every kind of optimizer state."""
    import re

    from nst_jax.optimize import init_loop_state, make_run
    from nst_jax.step import make_run_fn

    C, S = images
    cfg = TINY.replace(optimizer=optimizer, lbfgs_linesearch=linesearch, lbfgs_history=3).validate("vgg16")
    t = compute_targets(params16, SPEC, C, S, cfg)
    tx = make_optimizer(cfg)
    G = np.asarray(C)  # host copies: the runs donate their X

    def args(n):
        X = jnp.array(G)
        return X, init_loop_state(tx, X, cfg), params16, t, cfg, jnp.int32(n)

    hlo = jax.jit(make_run_fn(tx, SPEC, 5, static_trip=True)).lower(*args(3)).compile().as_text()
    # the chunk's 5 (L-BFGS's loops over its 3 pairs have counts of their own)
    assert re.findall(r'known_trip_count":\{"n":"(\d+)"', hlo).count("5") == 1
    # n = 3 of 5: 3 steps applied, then the state stays (equal to the while loop and the host loop)
    fused = make_run(tx, SPEC, 5, static_trip=True)(*args(3))
    host = make_run(tx, SPEC, 5, fused=False)(*args(3))
    wl = make_run(tx, SPEC, 5)(*args(3))
    assert int(fused[4]) == int(host[4]) == int(wl[4]) == 3 and int(fused[3]) == int(wl[3]) >= 3
    np.testing.assert_allclose(fused[0], host[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused[0], wl[0], rtol=1e-5, atol=1e-6)  # another program: rounding
    np.testing.assert_allclose(fused[2], wl[2], rtol=1e-5)  # NaN in the same slots
    assert np.isnan(np.asarray(fused[2])[3:]).all() and np.isfinite(np.asarray(fused[2])[:3]).all()
    # converged before the chunk: nothing changes, no step is counted
    ls = init_loop_state(tx, G, cfg)._replace(converged=jnp.bool_(True))
    X, ls2, costs, evals, done, ok = make_run(tx, SPEC, 5, static_trip=True)(
        jnp.array(G), ls, params16, t, cfg, jnp.int32(5))
    np.testing.assert_array_equal(X, G)  # bitwise: no update was applied
    assert int(done) == 0 and int(evals) == 0 and int(ls2.t) == 0 and bool(ok)
    # a non-finite cost at the first step: X stays the incoming image, ok False
    bad = {**t, "content": jnp.full_like(t["content"], jnp.inf)}
    X, _, costs, _, done, ok = make_run(tx, SPEC, 5, static_trip=True)(
        jnp.array(G), init_loop_state(tx, G, cfg), params16, bad, cfg, jnp.int32(5))
    assert not bool(ok) and int(done) == 0 and np.isnan(np.asarray(costs)).all()
    np.testing.assert_array_equal(X, G)


def test_bf16_precision_close_to_f32(params16, images):
    C, S = images
    b, hb = stylize(C, S, params16, SPEC, config=TINY.replace(precision="bf16"))
    assert b.dtype == np.float32 and np.isfinite(hb["costs"]["total"])
    cfg = TINY.replace(precision="bf16").validate("vgg16")
    t = compute_targets(params16, SPEC, C, S, cfg)
    G = jnp.asarray(rand_image(32, 32, 7))
    j16 = float(objective(G, params16, t, cfg, SPEC)[0])
    j32 = float(objective(G, params16, t, cfg.replace(precision="f32"), SPEC)[0])
    assert abs(j16 - j32) < 0.03 * j32  # the same image: only bf16 rounding differs
    jaxpr = str(jax.make_jaxpr(lambda g: objective(g, params16, t, cfg, SPEC)[0])(jnp.asarray(C)))
    assert "bf16" in jaxpr and "preferred_element_type=float32" in jaxpr


def _conv_precisions(jaxpr) -> list:
    """``precision`` of every conv_general_dilated in a (closed) jaxpr, sub-jaxprs included."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            out.append(eqn.params["precision"])
        for v in eqn.params.values():
            for sub in v if isinstance(v, tuple | list) else [v]:
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    out += _conv_precisions(sub)
    return out


@pytest.mark.parametrize(("precision", "expected"), [
    ("f32", None), ("bf16", None), ("highest", jax.lax.Precision.HIGHEST)])
def test_precision_modes_reach_every_convolution(params16, precision, expected):
    """``highest`` sets every convolution of the step (forward and backward) and of the
    targets to Precision.HIGHEST (true float32 on GPU/TPU); f32/bf16 keep XLA's default."""
    import optax

    from nst_jax import vgg
    from nst_jax.problem import _targets
    from nst_jax.step import make_step

    cfg = Config(precision=precision).validate("vgg16")
    X = jnp.full((32, 32, 3), 0.5)
    targets = _targets(params16, X, [X], jnp.ones(1), cfg, vgg.CAFFE)
    tx = optax.adam(0.01)
    step = jax.make_jaxpr(make_step(tx, vgg.CAFFE))(X, tx.init(X), params16, targets, cfg)
    tgt = jax.make_jaxpr(_targets, static_argnums=(5,))(params16, X, [X], jnp.ones(1), cfg, vgg.CAFFE)
    for jaxpr, n in ((step, 2 * 10 - 1), (tgt, 10)):  # VGG16 up to conv5_1: 10 convs (+ 9 input grads)
        precs = _conv_precisions(jaxpr)
        assert len(precs) >= n
        for p in precs:
            assert (p is None if expected is None else
                    p is not None and all(q == expected for q in (p if isinstance(p, tuple) else [p])))


@pytest.mark.parametrize(("optimizer", "linesearch"),
                         [("adam", "zoom"), ("lbfgs", "zoom"), ("lbfgs", "none")])
def test_step_keeps_state_at_non_finite_cost_and_updates_it_in_place(params16, images, optimizer,
                                                                      linesearch):
    """A non-finite J(X) returns X and the optimizer state unchanged (a conditional, so
    that a finite step can update the state in place): XLA's buffers for one donated
    guarded step hold the optimizer state once, not the old and the new side by side
    (before the conditional: a select between them, which for L-BFGS copied its whole
    history every step)."""
    from nst_jax.step import _guarded_step, fresh_state, init_loop_state, make_step

    C, S = images
    cfg = TINY.replace(optimizer=optimizer, lbfgs_history=40, lbfgs_linesearch=linesearch).validate("vgg16")
    t = compute_targets(params16, SPEC, C, S, cfg)
    tx = make_optimizer(cfg)
    step = make_step(tx, SPEC)
    X = jnp.asarray(C)
    state = fresh_state(tx, X)
    bad = {**t, "content": jnp.full_like(t["content"], jnp.nan)}
    X2, s2, info = jax.jit(step)(X, state, params16, bad, cfg)
    assert not np.isfinite(float(info.cost))
    np.testing.assert_array_equal(X2, X)  # bitwise: returned unchanged, not recomputed
    for a, b in zip(jax.tree.leaves(s2), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
    X3, _, info = jax.jit(step)(X, state, params16, t, cfg)
    assert np.isfinite(float(info.cost)) and not np.array_equal(X3, X)

    # the loops' guarded step (make_step's live conditional around the evaluation or the step)
    guarded = jax.jit(_guarded_step(step), donate_argnums=(0, 1))
    ls = init_loop_state(tx, X, cfg)
    ma = guarded.lower(X, ls, jnp.bool_(True), params16, t, cfg).compile().memory_analysis()
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(ls))
    assert ma.alias_size_in_bytes >= state_bytes  # the outputs reuse the donated inputs
    assert ma.temp_size_in_bytes < 0.5 * state_bytes or optimizer == "adam"  # no second history



@pytest.mark.parametrize("form", ["while", "fori", "host"])
def test_lbfgs_loops_update_the_history_in_place(params16, images, form):
    """Every loop form's buffers hold L-BFGS's history once: no copy in or out of a
    conditional around the update (measured before: 163 MB of temporaries for 78 MB
    histories at 256 px, 4 copies a step; benchmarks/README.md). Every form's step puts
    only the evaluation under its conditional (make_step's ``live``): the update guards
    itself."""
    from nst_jax.step import _guarded_step, init_loop_state, make_run_fn, make_step

    C, S = images
    cfg = TINY.replace(optimizer="lbfgs", lbfgs_linesearch="none", lbfgs_history=40).validate("vgg16")
    tx = make_optimizer(cfg)
    X = jnp.asarray(C)
    ls = init_loop_state(tx, X, cfg)
    t = compute_targets(params16, SPEC, C, S, cfg)
    if form == "host":
        step = jax.jit(_guarded_step(make_step(tx, SPEC)), donate_argnums=(0, 1))
        lowered = step.lower(X, ls, jnp.bool_(True), params16, t, cfg)
    else:
        run = jax.jit(make_run_fn(tx, SPEC, 4, static_trip=form == "fori"), donate_argnums=(0, 1))
        lowered = run.lower(X, ls, vgg.with_backward_kernels(params16), t, cfg, jnp.int32(4))
    ma = lowered.compile().memory_analysis()
    history = ls.opt.s.nbytes + ls.opt.y.nbytes
    assert ma.temp_size_in_bytes < 0.5 * history


@pytest.mark.parametrize(("optimizer", "linesearch"),
                         [("adam", "zoom"), ("lbfgs", "zoom"), ("lbfgs", "none")])
def test_step_live_false_skips_and_live_true_steps(params16, images, optimizer, linesearch):
    """``make_step``'s ``live``: False returns X and the state unchanged with cost NaN
    and no evaluation counted; True is the plain step."""
    from nst_jax.step import fresh_state, make_step

    C, S = images
    cfg = TINY.replace(optimizer=optimizer, lbfgs_history=5, lbfgs_linesearch=linesearch).validate("vgg16")
    t = compute_targets(params16, SPEC, C, S, cfg)
    tx = make_optimizer(cfg)
    step = jax.jit(make_step(tx, SPEC))
    X = jnp.asarray(C)
    state = fresh_state(tx, X)
    X0, s0, info0 = step(X, state, params16, t, cfg, jnp.bool_(False))
    assert np.isnan(float(info0.cost)) and int(info0.evals) == 0
    np.testing.assert_array_equal(X0, X)  # bitwise: returned unchanged, not recomputed
    for a, b in zip(jax.tree.leaves(s0), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
    if info0.terms is not None:
        assert all(np.isnan(np.asarray(v)).all() for v in jax.tree.leaves(info0.terms))
    X1, s1, info1 = step(X, state, params16, t, cfg, jnp.bool_(True))
    X2, s2, info2 = step(X, state, params16, t, cfg)
    # another program (the evaluation inside a conditional): rounding only
    np.testing.assert_allclose(X1, X2, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(info1.cost), float(info2.cost), rtol=1e-6)
    assert int(info1.evals) == int(info2.evals) >= 1
