"""The one engine and the open API: custom optimizers and objectives through every
driver, grids with scales, forward mode, jit of the objective, early stops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rand_image

from nst_jax import grid as Gd
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.engine import iterate, stylize
from nst_jax.problem import compute_targets, objective
from nst_jax.step import init_loop_state, make_run

SPEC = vgg.CAFFE
CFG = Config(alpha=1.0, beta=1e-2, iterations=6, report_every=3, learning_rate=0.05)


@pytest.fixture(scope="module")
def images():
    return rand_image(32, 32, 1), rand_image(32, 32, 2)


def test_custom_optax_transformation_keeps_scales_and_tol(params16, images):
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05))
    cfg = CFG.replace(scales=2, min_size=24, tol=1e-9, tol_window=2)
    reports = list(iterate(*images, params16, SPEC, config=cfg, tx=tx))
    assert [p.scale for p in reports] == [0, 0, 1, 1] and reports[-1].finished
    assert reports[-1].image.shape == (32, 32, 3)
    default = stylize(*images, params16, SPEC, config=CFG)[0]
    custom = stylize(*images, params16, SPEC, config=CFG, tx=optax.adam(0.05))[0]
    # bitwise: the default tx is optax.adam(0.05) too, so this is the same program on the same input
    np.testing.assert_array_equal(default, custom)


def test_custom_objective_adds_a_term_and_keys_the_cache(params16, images):
    def brighter(X, params, targets, config, spec):
        j, terms = objective(X, params, targets, config, spec)
        extra = 1e9 * jnp.mean((X - 1.0) ** 2)  # dominates J: Adam pushes every pixel up
        return j + extra, {**terms, "total": terms["total"] + extra}

    plain = stylize(*images, params16, SPEC, config=CFG)[0]
    bright = stylize(*images, params16, SPEC, config=CFG, objective=brighter)[0]
    again = stylize(*images, params16, SPEC, config=CFG)[0]
    assert bright.mean() > plain.mean() + 0.01
    np.testing.assert_array_equal(plain, again)  # bitwise: the same (cached) program, same input


def test_grid_runs_scales_through_the_engine(params16, images):
    cfg = CFG.replace(scales=2, min_size=24)
    g = Gd.stylize_grid(*images, params16, SPEC, config=cfg, betas=[1e-2, 1e-1])
    assert g.images.shape == (2, 32, 32, 3) and g.history.shape == (2, 12)
    one = stylize(*images, params16, SPEC, config=cfg.replace(beta=1e-1))[0]
    np.testing.assert_allclose(g.images[1], one, atol=1e-4)


def test_grid_checks_image_sizes_like_stylize(params16):
    with pytest.raises(ValueError, match="too small for conv5_1"):
        Gd.stylize_grid(rand_image(8, 8), rand_image(32, 32), params16, SPEC, config=CFG)


def test_jit_of_the_objective_as_written(params16, images):
    cfg = CFG.validate("vgg16")
    C, S = (jnp.asarray(x) for x in images)
    targets = compute_targets(params16, SPEC, C, S, cfg)
    eager = objective(C, params16, targets, cfg, SPEC)[0]
    jitted = jax.jit(objective)(C, params16, targets, cfg, SPEC)[0]
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-5)


def test_forward_mode_through_vgg_features(params16, images):
    x = vgg.preprocess(jnp.asarray(images[0]), SPEC)
    v = jax.random.normal(jax.random.key(0), x.shape)

    def f(x):
        return jnp.sum(vgg.vgg_features(params16, x, ["conv2_1"])["conv2_1"] ** 2)

    _, jvp = jax.jvp(f, (x,), (v,))
    np.testing.assert_allclose(float(jvp), float(jnp.vdot(jax.grad(f)(x), v)), rtol=1e-4)
    hvp = jax.jvp(jax.grad(f), (x,), (v,))[1]  # forward-over-reverse Hessian-vector product
    eps = 1e-3
    fd = (jax.grad(f)(x + eps * v) - jax.grad(f)(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(hvp), np.asarray(fd), rtol=2e-2, atol=2e-2 * float(
        jnp.abs(fd).max()))


def test_unfused_run_stops_at_convergence_like_the_fused_one(params16, images):
    cfg = CFG.replace(tol=0.5, tol_window=2).validate("vgg16")
    C, S = (jnp.asarray(x) for x in images)
    targets = compute_targets(params16, SPEC, C, S, cfg)
    calls = []

    def counted(X, params, targets, config, spec):
        jax.debug.callback(lambda: calls.append(1))
        return objective(X, params, targets, config, spec)

    tx = optax.sgd(1e-9)  # barely moves: the tolerance test passes at once
    run = make_run(tx, SPEC, 20, fused=False, objective=counted)
    X, ls, _, _, done, _ = run(C, init_loop_state(tx, C, cfg), vgg.with_backward_kernels(
        params16), targets, cfg, jnp.int32(20))
    jax.block_until_ready(X)
    assert bool(ls.converged) and int(done) < 20
    assert len(calls) <= int(done) + 2  # before: all 20 steps were evaluated


@pytest.mark.slow
@pytest.mark.real_weights
def test_readme_custom_example_runs(tmp_path, monkeypatch):
    """The README's custom-optimizer + custom-term example, as written (128 px, 60 steps)."""
    import re

    from conftest import REAL_VGG16, ROOT

    if not REAL_VGG16.exists():
        pytest.skip("weights/vgg16.h5 absent: run python scripts/fetch_weights.py")
    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- example: custom -->\n```python\n(.*?)```", text, re.S)[1]
    monkeypatch.chdir(ROOT)
    code = code.replace('"warm.png"', repr(str(tmp_path / "warm.png")))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    img = scope["image"]
    assert (tmp_path / "warm.png").exists() and img.shape == (85, 128, 3)
    means = img.mean(axis=(0, 1))
    assert means[0] > means[2] + 0.25  # the custom term pulled the mean colour to (0.7, 0.5, 0.3)


def test_batched_layout_resumes_bitwise(params16, images):
    """The engine's snapshot/resume works for a leading axis of points as for one image."""
    from nst_jax.grid import stack_configs
    from nst_jax.layout import Layout

    cfg = CFG.replace(iterations=6, report_every=2).validate("vgg16")
    layout = Layout.of(2, jax.devices()[:1])
    pcs = stack_configs(cfg, [{"beta": 1e-2}, {"beta": 1e-1}])
    kw = dict(config=cfg, layout=layout, point_configs=pcs, snapshots=True)
    full = list(iterate(*images, params16, SPEC, **kw))
    resumed = list(iterate(*images, params16, SPEC, resume=full[0].snapshot, **kw))
    assert full[-1].image.shape == (2, 32, 32, 3) and resumed[-1].step == full[-1].step == 6
    # bitwise: the same program on the same restored state (points at the same offsets)
    np.testing.assert_array_equal(resumed[-1].image, full[-1].image)
    np.testing.assert_array_equal(resumed[-1].history, full[-1].history)


def test_progress_times_the_computation_not_the_dispatch(params16):
    """Chunks are timed up to the host sync (the call itself only dispatches): the
    reported seconds per step are those of a blocking call of the same program."""
    import time

    from nst_jax.engine import _config_optimizer
    from nst_jax.layout import Layout

    cfg = CFG.replace(iterations=9, report_every=3).validate("vgg16")
    C, S = rand_image(128, 128, 1), rand_image(128, 128, 2)
    last = list(iterate(C, S, params16, SPEC, config=cfg))[-1]
    tx = _config_optimizer(cfg)
    run = Layout().programs(tx, SPEC, 3, objective).run  # the engine's own (cached) program
    X = jnp.asarray(C)
    args = (init_loop_state(tx, X, cfg), vgg.with_backward_kernels(params16),
            compute_targets(params16, SPEC, C, S, cfg), cfg, jnp.int32(3))
    t0 = time.perf_counter()
    jax.block_until_ready(run(X, *args))
    per_step = (time.perf_counter() - t0) / 3
    assert last.run_steps == 6
    assert last.run_s / last.run_steps > 0.3 * per_step  # before the fix: the dispatch alone


def test_running_average_is_empty_without_avg_decay_and_old_snapshots_resume(params16, images):
    """Without ``avg_decay`` the loop state holds no image-sized average (201 MB at 4096
    px); a snapshot from before, with X-shaped zeros there, still resumes, to the same
    image as the new snapshot (bitwise: the same program on the same restored state)."""
    X = jnp.zeros((8, 6, 3))
    tx = optax.adam(0.1)
    assert init_loop_state(tx, X, CFG).avg.shape == (0,)
    assert init_loop_state(tx, X, CFG.replace(avg_decay=0.5)).avg.shape == (8, 6, 3)
    cfg = CFG.replace(iterations=6, report_every=3)
    full = list(iterate(*images, params16, SPEC, config=cfg, snapshots=True))
    snap = full[0].snapshot
    leaves = jax.tree.leaves(init_loop_state(tx, jnp.asarray(snap["X"]), cfg))
    i = next(k for k, leaf in enumerate(leaves) if leaf.shape == (0,))
    old = dict(snap, loop_state=[np.zeros_like(snap["X"]) if k == i else v
                                 for k, v in enumerate(snap["loop_state"])])
    a = list(iterate(*images, params16, SPEC, config=cfg, resume=snap))[-1]
    b = list(iterate(*images, params16, SPEC, config=cfg, resume=old))[-1]
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.image, full[-1].image)
    with pytest.raises(ValueError, match="does not match these settings"):
        list(iterate(*images, params16, SPEC, config=cfg.replace(avg_decay=0.5), resume=snap))
