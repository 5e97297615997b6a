"""Reports' costs: taken from the next chunk's first evaluation (the same cost at the
same image, no forward pass of their own) where the loop evaluates exactly that cost;
measured by a forward pass elsewhere (averaged iterates, swd's per-step directions,
line searches, the last report of a scale)."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rand_image

from nst_jax import grid as Gd
from nst_jax import layout as L
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.engine import iterate
from nst_jax.problem import compute_targets, objective

SPEC = vgg.CAFFE
CFG = Config(alpha=1.0, beta=1e-2, iterations=12, report_every=3, learning_rate=0.05)


@pytest.fixture(scope="module")
def images():
    return rand_image(32, 32, 1), rand_image(32, 32, 2)


@pytest.fixture
def calls(monkeypatch):
    """Counts of the engine's ``measure`` (a forward pass) and ``show`` (the image alone)."""
    n = {"measure": 0, "show": 0}
    real = L.Layout.programs

    def programs(self, *args, **kw):
        p = real(self, *args, **kw)

        def measure(*a):
            n["measure"] += 1
            return p.measure(*a)

        def show(*a):
            n["show"] += 1
            return p.show(*a)

        return L.Programs(p.run, measure, show)

    monkeypatch.setattr(L.Layout, "programs", programs)
    return n


@pytest.mark.parametrize(("optimizer", "linesearch"), [("adam", "zoom"), ("lbfgs", "none")])
def test_reports_cost_the_image_they_show_without_a_forward_pass(params16, images, calls,
                                                                  optimizer, linesearch):
    cfg = CFG.replace(optimizer=optimizer, lbfgs_linesearch=linesearch)
    reports = list(iterate(*images, params16, SPEC, config=cfg))
    assert [p.step for p in reports] == [3, 6, 9, 12] and reports[-1].finished
    assert calls == {"measure": 1, "show": 3}  # only the last report measures
    t = compute_targets(params16, SPEC, *images, cfg.validate("vgg16"))
    for p in reports:
        want = objective(jnp.asarray(p.image), params16, t, cfg, SPEC)[1]
        assert set(p.costs) == set(want)
        for k in want:
            # the loop's forward pass inside value_and_grad and a plain one: the same
            # float32 operations, fused differently by XLA (rounding only)
            np.testing.assert_allclose(p.costs[k], float(want[k]), rtol=2e-5, err_msg=k)
    # each report's total is the cost the next chunk's first step saw
    for p, nxt in itertools.pairwise(reports):
        assert p.costs["total"] == pytest.approx(float(nxt.history[p.step]), rel=1e-6)


@pytest.mark.parametrize("change", [
    {"avg_decay": 0.5},                                  # the report shows the average, not X
    {"style_loss": "swd", "swd_directions": 8},          # the loop's directions change each step
    {"optimizer": "lbfgs", "lbfgs_linesearch": "zoom"},  # its first value may come from its state
])
def test_reports_measure_where_the_loop_evaluates_another_cost(params16, images, calls, change):
    reports = list(iterate(*images, params16, SPEC, config=CFG.replace(**change)))
    assert len(reports) == 4 and calls == {"measure": 4, "show": 0}


def test_a_non_finite_cost_still_stops_with_a_measured_report(params16, images, calls):
    """The run stops at the first non-finite cost; the report is measured (nothing
    waits for a next chunk that will not run)."""
    reports = list(iterate(*images, params16, SPEC, config=CFG.replace(alpha=float("inf"))))
    assert len(reports) == 1 and reports[0].error is not None and calls["measure"] == 1


def test_grid_reports_defer_per_point(params16, images, calls):
    g = Gd.stylize_grid(*images, params16, SPEC, config=CFG.replace(iterations=6),
                        betas=[1e-2, 1e-1])
    assert g.images.shape == (2, 32, 32, 3) and calls == {"measure": 1, "show": 1}


@pytest.mark.parametrize(("optimizer", "linesearch"), [("adam", "zoom"), ("lbfgs", "none")])
def test_the_fori_loop_reports_without_a_forward_pass_too(params16, images, calls, monkeypatch,
                                                          optimizer, linesearch):
    """GPUs and TPUs run the chunk as a fori loop (``static_trip``): its reports also take
    the next chunk's first terms, and equal the while loop's."""
    cfg = CFG.replace(optimizer=optimizer, lbfgs_linesearch=linesearch)
    want = list(iterate(*images, params16, SPEC, config=cfg))
    real = L.single_programs
    monkeypatch.setattr(L, "single_programs",
                        lambda tx, spec, chunk, fn, static=False: real(tx, spec, chunk, fn, True))
    calls.update(measure=0, show=0)
    got = list(iterate(*images, params16, SPEC, config=cfg))
    assert calls == {"measure": 1, "show": 3}
    for g, w in zip(got, want, strict=True):
        assert g.step == w.step
        for k in w.costs:  # another program (a fori loop): rounding only
            np.testing.assert_allclose(g.costs[k], w.costs[k], rtol=1e-5, err_msg=k)
        np.testing.assert_allclose(g.image, w.image, atol=1e-5)


@pytest.mark.parametrize(("optimizer", "linesearch"),
                         [("adam", "zoom"), ("lbfgs", "none"), ("lbfgs", "zoom")])
def test_both_loop_forms_return_the_first_evaluations_terms(params16, images, optimizer, linesearch):
    """``make_run(first_terms=True)``: the terms at the incoming X in both loop forms
    (``None`` for the line search); NaN when the chunk did not step."""
    from nst_jax.step import init_loop_state, make_optimizer, make_run

    cfg = CFG.replace(optimizer=optimizer, lbfgs_linesearch=linesearch).validate("vgg16")
    t = compute_targets(params16, SPEC, *images, cfg)
    tx = make_optimizer(cfg)
    G = np.asarray(rand_image(32, 32, 5))  # not the content (its content cost is 0: rounding only)
    want = objective(jnp.asarray(G), params16, t, cfg, SPEC)[1]
    for static in (False, True):
        run = make_run(tx, SPEC, 4, static_trip=static, first_terms=True)
        first = run(jnp.array(G), init_loop_state(tx, jnp.asarray(G), cfg), params16, t, cfg, jnp.int32(3))[6]
        stopped = init_loop_state(tx, jnp.asarray(G), cfg)._replace(converged=jnp.bool_(True))
        none = run(jnp.array(G), stopped, params16, t, cfg, jnp.int32(3))[6]
        if linesearch == "zoom" and optimizer == "lbfgs":
            assert first is None and none is None
            continue
        for k in want:  # the loop's value_and_grad against a plain forward pass: rounding only
            np.testing.assert_allclose(first[k], float(want[k]), rtol=2e-5, err_msg=k)
            assert np.isnan(float(none[k]))
