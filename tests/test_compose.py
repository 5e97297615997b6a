"""The composition table: every pair of the user-facing options runs on tiny synthetic
inputs, compared with a reference where one exists (tiles against the whole image,
several devices against one, a resumed run against an uninterrupted one), or is
refused up front with one message that names the pair.

The pairs that need several devices run together in one subprocess with 2 virtual
CPU devices (XLA_FLAGS must be set before JAX starts); the others run here. Shallow
layers and 48 x 40 px images keep the 91 pairs (most of them distinct compiled
programs) to about two minutes on two cores.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

OPTIONS = ("scales", "tile", "devices", "regions", "content_mask", "style_loss", "color", "blend",
           "optimizer", "precision", "grid", "batch", "video", "resume")
DRIVERS = ("grid", "batch", "video")

#: Pairs refused up front, and the words of the refusal. Each names both options. The
#: drivers are separate functions and commands (a grid sweeps one image's loss weights, a
#: batch many photos, a video sequential frames): asking for two is refused by the table's
#: own builder; masks in a batch by the engine (and ``nst-jax batch``); a batch has no
#: mid-chunk resume (each photo is written when its chunk finishes, and ``nst-jax batch
#: --resume`` skips the photos written).
REFUSED: dict[frozenset[str], str] = {
    frozenset({"grid", "batch"}): "grid and batch",
    frozenset({"grid", "video"}): "grid and video",
    frozenset({"batch", "video"}): "batch and video",
    frozenset({"batch", "regions"}): "regions and masks belong to one photo, not to a batch",
    frozenset({"batch", "content_mask"}): "regions and masks belong to one photo, not to a batch",
}

#: Where the pair's result has an independent reference: compare with the run without it.
EXACT = ("tile", "devices", "resume")


@dataclasses.dataclass
class Case:
    """One run of the table: which driver, its settings and inputs."""

    driver: str = "single"
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    styles: int = 1
    blend: tuple[float, ...] | None = None
    regions: bool = False
    content_mask: bool = False
    devices: bool = False
    resume: bool = False


def case_of(options: tuple[str, ...]) -> Case:
    # Shallow layers (halo 12 px): small images still cut into 2 x 2 tiles, and small programs
    # (the table is compile-bound: 91 pairs, most of them distinct programs)
    c = Case(config={"iterations": 2, "report_every": 1, "beta": 1e-2, "content_layer": "conv3_1",
                     "style_layers": ("conv1_1", "conv2_1", "conv3_1"), "style_weights": (1.0, 1.0, 1.0)})
    for o in options:
        if o in DRIVERS:
            if c.driver != "single":
                raise ValueError(f"{c.driver} and {o}: one driver per run (a grid sweeps one image's "
                                 "loss weights, a batch many photos, a video sequential frames)")
            c.driver = o
    for o in options:
        if o == "scales":
            c.config.update(scales=2, min_size=24)
        elif o == "tile":
            c.config["tile"] = 24
        elif o == "style_loss":
            c.config["style_loss"] = "meancov"
        elif o == "color":
            c.config["preserve_color"] = "luminance"
        elif o == "optimizer":
            c.config["optimizer"] = "lbfgs"
        elif o == "precision":
            c.config["precision"] = "bf16"
        elif o == "blend":
            c.styles, c.blend = 2, (0.7, 0.3)
        elif o == "regions":
            c.styles, c.regions = 2, True
        elif o == "content_mask":
            c.content_mask = True
        elif o == "devices":
            c.devices = True
        elif o == "resume":
            c.resume = True
    return c


def run_case(c: Case, params: Any) -> np.ndarray:
    """The images of a case, ``(n, H, W, 3)``; a refusal raises ``ValueError``."""
    import jax
    from conftest import rand_image

    from nst_jax import vgg
    from nst_jax.config import Config
    from nst_jax.guides import Guides

    H, W = 48, 40
    C = rand_image(H, W, 1)
    styles = [rand_image(32, 32, 2 + k) for k in range(c.styles)]
    cfg = Config(**c.config)
    devices = jax.devices()[:2] if c.devices else None
    guides = None
    if c.regions or c.content_mask:
        m = np.zeros((2, H, W), np.float32)
        m[0, : H // 2], m[1, H // 2:] = 1.0, 1.0
        guides = Guides(regions=m if c.regions else None,
                        content=np.linspace(0.2, 1, H * W, dtype=np.float32).reshape(H, W)
                        if c.content_mask else None)
    if c.driver == "batch":
        if guides is not None:  # the engine's own refusal (the CLI's: nst-jax batch refuses masks)
            from nst_jax.engine import iterate
            from nst_jax.grid import stack_configs
            from nst_jax.layout import Layout

            next(iterate(np.stack([C, C]), styles, params, vgg.CAFFE, config=cfg, guides=guides,
                         layout=Layout.of(2, jax.devices()[:1], per_point=True),
                         point_configs=stack_configs(cfg, [{}, {}])))
        if c.resume:
            return _batch_resumed(C, styles, params, cfg, c, devices)
        from nst_jax.batch import stylize_batch

        out = stylize_batch([C, rand_image(H, W, 9)], styles, params, vgg.CAFFE, config=cfg,
                            style_blend=c.blend, devices=devices)
        return np.stack([o[0] for o in out])
    if c.driver == "grid":
        return _grid(C, styles, params, cfg, c, devices, guides)
    if c.driver == "video":
        return _video(C, styles, params, cfg, c, devices, guides)
    return _single(C, styles, params, cfg, c, devices, guides)


def _single(C, styles, params, cfg, c, devices, guides) -> np.ndarray:
    from nst_jax import vgg
    from nst_jax.engine import _devices_layout, iterate

    kw = {"config": cfg, "style_blend": c.blend, "guides": guides,
          "layout": _devices_layout(devices, cfg.validate("vgg16"))}
    full = list(iterate(C, styles, params, vgg.CAFFE, snapshots=c.resume, **kw))
    if not c.resume:
        return full[-1].image[None]
    resumed = list(iterate(C, styles, params, vgg.CAFFE, resume=full[0].snapshot, **kw))
    return np.stack([full[-1].image, resumed[-1].image])


def _grid(C, styles, params, cfg, c, devices, guides) -> np.ndarray:
    import jax

    from nst_jax import vgg
    from nst_jax.grid import stylize_grid

    kw = {"config": cfg, "alphas": [1.0, 2.0], "style_blend": c.blend, "guides": guides,
          "devices": devices or jax.devices()[:1], "chunk_points": 1 if c.resume else None}
    snaps: list = []
    full = stylize_grid(C, styles, params, vgg.CAFFE, on_snapshot=snaps.append if c.resume else None, **kw)
    if not c.resume:
        return full.images
    mid = next(s for s in snaps if s["chunk"] == 1 and s["engine"] is not None)
    again = stylize_grid(C, styles, params, vgg.CAFFE, resume=mid, **kw)
    return np.concatenate([full.images, again.images])


def _video(C, styles, params, cfg, c, devices, guides) -> np.ndarray:
    from nst_jax import vgg
    from nst_jax.engine import _devices_layout
    from nst_jax.video import iterate_video

    frames = [C, np.roll(C, 2, axis=1)]
    flow = lambda a, b: np.zeros((*a.shape[:2], 2), np.float32)  # noqa: E731 (a still camera)
    kw = {"config": cfg, "iters": 2, "flow_fn": flow, "style_blend": c.blend, "guides": guides,
          "layout": _devices_layout(devices, cfg.validate("vgg16"))}
    seen: list = []
    full = [o for o, _ in iterate_video(frames, styles, params, vgg.CAFFE, snapshots=c.resume,
                                        callback=lambda i, p: seen.append((i, p)), **kw)]
    if not c.resume:
        return np.stack(full)
    mid = next(p for i, p in seen if i == 0 and not p.finished)
    again = [o for o, _ in iterate_video(frames, styles, params, vgg.CAFFE, resume=mid.snapshot, **kw)]
    return np.stack(full + again)


def _batch_resumed(C, styles, params, cfg, c, devices) -> np.ndarray:
    raise ValueError("batch with resume: a batch writes each photo when its chunk finishes and "
                     "nst-jax batch --resume skips those; a chunk in progress restarts (no mid-chunk resume)")


def pairs() -> list[tuple[str, str]]:
    return list(itertools.combinations(OPTIONS, 2))


def check_pair(pair: tuple[str, str], params: Any) -> dict[str, Any]:
    """Run one pair (and its reference); ``{"status": "ok"|"refused", ...}``."""
    try:
        c = case_of(pair)
        got = run_case(c, params)
    except ValueError as e:
        return {"status": "refused", "message": str(e)}
    out: dict[str, Any] = {"status": "ok", "finite": bool(np.all(np.isfinite(got)))}
    if c.resume:
        half = len(got) // 2
        out["resume_diff"] = float(np.max(np.abs(got[:half] - got[half:])))
    for o in ("tile", "devices"):
        if o in pair:
            other = tuple(x for x in pair if x != o)
            ref = run_case(case_of(other), params)
            out[o + "_diff"] = float(np.mean(np.abs(got[: len(ref)] - ref)))
    return out


def _assert_pair(pair: tuple[str, str], r: dict[str, Any]) -> None:
    want = REFUSED.get(frozenset(pair)) or ("no mid-chunk resume" if set(pair) == {"batch", "resume"}
                                            else None)
    if want is not None:
        assert r["status"] == "refused" and want in r["message"], (pair, r)
        return
    assert r["status"] == "ok" and r["finite"], (pair, r)
    if "resume_diff" in r:
        # bitwise: the resumed run continues the same compiled programs from the same state
        assert r["resume_diff"] == 0.0, (pair, r)
    for o in ("tile", "devices"):
        if o + "_diff" in r:
            # another program summing in another order; Adam/L-BFGS amplify the rounding where
            # a gradient is ~0 (test_tiling), and bf16 rounds per window
            tol = 2e-2 if "precision" in pair else 2e-3 if "scales" in pair else 1e-4
            assert r[o + "_diff"] < tol, (pair, r)


LOCAL = [p for p in pairs() if "devices" not in p]
REMOTE = [p for p in pairs() if "devices" in p]


@pytest.mark.parametrize("pair", LOCAL, ids=["+".join(p) for p in LOCAL])
def test_pair(pair, params16):
    _assert_pair(pair, check_pair(pair, params16))


SCRIPT = r"""
import json, sys
sys.path.insert(0, "tests")
from conftest import tiny_params
from test_compose import REMOTE, check_pair
params = tiny_params()
print(json.dumps({"+".join(p): check_pair(p, params) for p in REMOTE}))
"""


def test_pairs_on_two_devices():
    """The 13 pairs with ``devices``, in one subprocess (one per worker would repeat it)."""
    from conftest import ROOT
    from test_sharding import _env

    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=_env(2),
                       timeout=1800, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(results) == sorted("+".join(p) for p in REMOTE)
    failed = []
    for pair in REMOTE:
        try:
            _assert_pair(pair, results["+".join(pair)])
        except AssertionError as e:
            failed.append(str(e))
    assert not failed, failed
