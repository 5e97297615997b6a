"""Video (Ruder et al. 2016): the warp against a NumPy reference, consistency masks on
a synthetic occlusion, the temporal cost, a 3-frame clip end to end (library and
``nst-jax video``, resume after an interruption), video I/O and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, rand_image
from PIL import Image

from nst_jax import temporal as T
from nst_jax import vgg
from nst_jax import videoio as V
from nst_jax.cli import main
from nst_jax.config import Config
from nst_jax.video import frame_config, iterate_video


def _np_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Bilinear backward warp by explicit loops (float64), edges clamped."""
    H, W = image.shape[:2]
    out = np.zeros_like(image, np.float64)
    for y in range(H):
        for x in range(W):
            sy = min(max(y + flow[y, x, 1], 0), H - 1)
            sx = min(max(x + flow[y, x, 0], 0), W - 1)
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
            wy, wx = sy - y0, sx - x0
            out[y, x] = ((1 - wy) * (1 - wx) * image[y0, x0] + (1 - wy) * wx * image[y0, x1]
                         + wy * (1 - wx) * image[y1, x0] + wy * wx * image[y1, x1])
    return out


@pytest.mark.parametrize("t", [lambda f: f, jax.jit])
def test_warp_matches_loops_and_integer_shifts_are_exact(t):
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (7, 9, 3)).astype(np.float32)
    flow = rng.uniform(-2, 2, (7, 9, 2)).astype(np.float32)
    out, inside = t(T.warp)(jnp.asarray(img), jnp.asarray(flow))
    np.testing.assert_allclose(out, _np_warp(img, flow), rtol=1e-5, atol=1e-6)
    shift = np.zeros((7, 9, 2), np.float32)
    shift[..., 0], shift[..., 1] = 2.0, -1.0  # out[y, x] = img[y - 1, x + 2]
    out, inside = t(T.warp)(jnp.asarray(img), jnp.asarray(shift))
    np.testing.assert_array_equal(np.asarray(out)[1:, :-2], img[:-1, 2:])
    assert not np.asarray(inside)[0].any() and not np.asarray(inside)[:, -2:].any()
    assert np.asarray(inside)[1:, :-2].all()


def test_consistency_marks_a_disocclusion_and_motion_boundaries():
    """A square moves 3 px right over a static background: the strip it uncovers has no
    source in the previous frame (disoccluded), its edges are motion boundaries, the
    rest (static or moving inside the square) is reliable."""
    H = W = 24
    fwd = np.zeros((H, W, 2), np.float32)  # t-1 -> t: the square (rows/cols 8..15) moves +3 in x
    fwd[8:16, 8:16, 0] = 3.0
    bwd = np.zeros((H, W, 2), np.float32)  # t -> t-1: pixels of the square now at 11..18 came from -3
    bwd[8:16, 11:19, 0] = -3.0
    c = np.asarray(T.consistency(jnp.asarray(fwd), jnp.asarray(bwd)))
    assert c[8:16, 8:11].sum() == 0  # uncovered strip: background in t, square in t-1
    assert c[:6].all() and c[:, :6].all() and c[19:].all()  # far background
    assert c[10:14, 12:17].all()  # inside the moving square
    # motion boundaries (forward differences of b): the square's last column and the row above it
    assert c[8:16, 18].sum() == 0 and c[7, 11:19].sum() == 0 and c[15, 11:19].sum() == 0
    lt = np.asarray(T.long_term_weights(jnp.stack([jnp.asarray(c), jnp.ones((H, W))])))
    np.testing.assert_array_equal(lt[0], c)  # exact: c is 0/1, max(c - sum, 0) of 0/1 values
    np.testing.assert_array_equal(lt[1], 1.0 - c)  # frame t-2 only where t-1 was unreliable


def test_temporal_cost_matches_numpy_and_its_gradient():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (5, 6, 3)).astype(np.float32)
    prev = rng.uniform(0, 1, (2, 5, 6, 3)).astype(np.float32)
    w = rng.uniform(0, 1, (2, 5, 6)).astype(np.float32)
    want = sum(w[k, y, x] * (X[y, x, c] - prev[k, y, x, c]) ** 2 for k in range(2)
               for y in range(5) for x in range(6) for c in range(3)) / X.size
    np.testing.assert_allclose(float(T.temporal_cost(jnp.asarray(X), prev, w)), want, rtol=1e-5)
    g = jax.grad(T.temporal_cost)(jnp.asarray(X), jnp.asarray(prev), jnp.asarray(w))
    np.testing.assert_allclose(g, 2 * np.sum(w[..., None] * (X - prev), axis=0) / X.size, rtol=1e-5)


def test_frame_config_shares_one_program_when_it_can():
    a, b = frame_config(Config(iterations=300, report_every=25), 100)
    assert a is b and a.report_every == 25
    a, b = frame_config(Config(iterations=301, report_every=25), 100)
    assert a.iterations == 301 and b.iterations == 100


def _pan(n: int = 3, step: int = 3) -> list[np.ndarray]:
    """A pan over the bundled photo: frame t is the crop shifted right by ``step * t``."""
    from nst_jax.image import load_image

    img = load_image(ROOT / "examples" / "content_chelsea.png", 160)
    return [img[20:68, 10 + step * t: 58 + step * t] for t in range(n)]


def _shift_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The pan's exact flow from a to b (frames 3 px apart): the test's own flow_fn."""
    f = np.zeros((*a.shape[:2], 2), np.float32)
    f[..., 0] = -3.0 if np.mean(a[:, 3:] - b[:, :-3]) ** 2 < np.mean(a[:, :-3] - b[:, 3:]) ** 2 else 3.0
    return f


def test_three_frame_clip_is_steadier_with_the_temporal_cost(params16):
    frames, S = _pan(), rand_image(48, 48, 2)
    cfg = Config(iterations=20, report_every=10, beta=1e-2)
    runs = {}
    for name, kw in {"independent": {"warm_start": False, "temporal_weight": 0.0, "iters": 20},
                     "full": {"temporal_weight": 2e6, "iters": 10}}.items():
        runs[name] = np.stack([o for o, _ in iterate_video(frames, S, params16, vgg.CAFFE, config=cfg,
                                                           flow_fn=_shift_flow, **kw)])
    bwd = jnp.stack([jnp.asarray(_shift_flow(frames[t], frames[t - 1])) for t in (1, 2)])
    cons = jnp.stack([T.consistency(jnp.asarray(_shift_flow(frames[t - 1], frames[t])), bwd[t - 1])
                      for t in (1, 2)])
    err = {k: float(T.warping_error(jnp.asarray(v), bwd, cons)) for k, v in runs.items()}
    assert err["full"] < 0.5 * err["independent"], err


def test_dis_flow_recovers_a_pan():
    frames = _pan(2, step=3)
    f = V.dis_flow(frames[1], frames[0])  # frame 1's pixels were 3 px further left... in frame 0: +3
    inner = f[8:-8, 8:-8]
    np.testing.assert_allclose(np.median(inner[..., 0]), 3.0, atol=0.3)
    np.testing.assert_allclose(np.median(inner[..., 1]), 0.0, atol=0.3)


def _clip(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    for t, f in enumerate(_pan(n)):
        Image.fromarray(np.round(f * 255).astype(np.uint8)).save(folder / f"{t:03d}.png")
    return folder


def test_cli_video_end_to_end_mp4_and_resume(work, tmp_path, capsys):
    clip = _clip(tmp_path / "clip", 4)
    base = ["video", str(clip), str(work / "s.png"), "--weights", str(work / "tiny.h5"), "--size", "48",
            "--iters-first", "6", "--iters", "3", "--report-every", "3", "--beta", "1e-2"]
    out = tmp_path / "o.mp4"
    assert main([*base, "-o", str(out), "--max-frames", "2", "--long-term", "2"]) == 0
    probe = V.probe(out)
    assert probe["frames"] == 2 and probe["size"] == (48, 48)
    assert not (tmp_path / "o.mp4.frames").exists()
    assert json.loads((tmp_path / "o.mp4.json").read_text())["frames"] == 2
    # a folder output, interrupted after 2 of 4 frames (2 frames written), then resumed
    frames_out = tmp_path / "frames"
    assert main([*base, "-o", str(frames_out), "--max-frames", "2"]) == 0
    (frames_out / "meta.json").unlink()
    run = json.loads((frames_out / "run.json").read_text())
    run["max_frames"] = None
    (frames_out / "run.json").write_text(json.dumps(run))
    capsys.readouterr()
    assert main([*base, "-o", str(frames_out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "frame 3/4" in err and "frame 1/4" not in err
    assert sorted(p.name for p in frames_out.glob("0*.png")) == [f"{i:06d}.png" for i in range(4)]


def test_write_video_copies_audio(tmp_path):
    av = pytest.importorskip("av")
    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as c:  # 10 frames and a second of a 440 Hz tone
        v = c.add_stream("mpeg4", rate=10)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=8000)
        for i in range(10):
            for p in v.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), "rgb24")):
                c.mux(p)
        tone = (np.sin(2 * np.pi * 440 * np.arange(8000) / 8000) * 0.3).astype(np.float32)[None]
        for k in range(0, 8000, 1024):
            fr = av.AudioFrame.from_ndarray(tone[:, k:k + 1024].copy(), format="flt", layout="mono")
            fr.sample_rate = 8000
            for p in a.encode(fr):
                c.mux(p)
        for s in (v, a):
            for p in s.encode():
                c.mux(p)
    frames = list(V.read_frames(src))
    assert len(frames) == 10 and frames[0].shape == (32, 32, 3)
    out = V.write_video(tmp_path / "out.mp4", frames, 10.0, audio_from=src)
    assert V.probe(out)["audio"] and V.probe(out)["frames"] == 10


@pytest.mark.parametrize(("make", "extra", "msg"), [
    (lambda d: d / "missing.mp4", [], "video not found"),
    (lambda d: _text(d / "bad.mp4"), [], "cannot decode video"),
    (lambda d: (d / "empty").mkdir() or d / "empty", [], "zero frames (no images in this folder)"),
    (lambda d: _sizes(d), [], "frame 1 is 40x48, frame 0 is 48x48 (frames of changing size)"),
    (lambda d: _clip(d / "c"), ["--fps", "1e308"], "holds 0.001 to 1000 frames per second"),
    (lambda d: _clip(d / "c"), ["--fps", "1e-300"], "holds 0.001 to 1000 frames per second"),
    (lambda d: _clip(d / "c"), ["-o", "OUT.gif", "--fps", "200"],
     "a GIF (delays of 1 to 65535 centiseconds) holds 0.001526 to 100 frames per second"),
    (lambda d: _truncated(d), [], "its header promises 8 frames, but only 4 decode"),
    (lambda d: _clip(d / "c"), ["-o", "OUT.xyz"], "cannot write .xyz video"),
    (lambda d: _clip(d / "c"), ["--long-term", "5"], "--long-term 5: larger than the 3 frame(s)"),
])
def test_cli_video_refusals(work, tmp_path, capsys, make, extra, msg):
    src = make(tmp_path)
    out = ["-o", str(tmp_path / "o.mp4")] if "-o" not in extra else []
    extra = [str(tmp_path / ("o." + a[4:])) if a.startswith("OUT.") else a for a in extra]
    code = main(["video", str(src), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                 "--size", "48", "--iters-first", "2", "--iters", "2", *out, *extra])
    err = capsys.readouterr().err
    assert code == 2 and msg in err and "Traceback" not in err, err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("o.")]  # no output, no frames


def _truncated(d: Path) -> Path:
    """A clip whose stream breaks off: the header promises more than can be decoded."""
    av = pytest.importorskip("av")
    src = d / "t.mp4"
    with av.open(str(src), "w", options={"movflags": "faststart"}) as c:  # the header first
        v = c.add_stream("mpeg4", rate=10)
        v.width = v.height = 48
        v.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(8):
            for p in v.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 48, 3), np.uint8),
                                                         "rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 2 // 3])  # the header says 8 frames, 4 decode
    return src


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_cli_video_never_touches_its_input_frames(work, tmp_path, capsys, where):
    (tmp_path / "in").mkdir()
    clip = _clip(tmp_path / "in" / "clip")
    before = {p.name: p.read_bytes() for p in clip.iterdir()}
    out = {"same": clip, "inside": clip / "out", "contains": tmp_path / "in"}[where]
    code = main(["video", str(clip), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                 "--size", "48", "--iters-first", "2", "--iters", "2", "-o", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "refused even with --overwrite" in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in clip.iterdir()} == before


def test_cli_video_failure_leaves_nothing_and_outputs_follow_the_umask(work, tmp_path, monkeypatch,
                                                                      capsys):
    import os

    import nst_jax.video as video_mod

    clip = _clip(tmp_path / "clip", 2)
    args = ["video", str(clip), str(work / "s.png"), "--weights", str(work / "tiny.h5"), "--size", "48",
            "--iters-first", "2", "--iters", "2", "--report-every", "2"]
    real = video_mod.iterate_video

    def breaks_after_one(*a, **k):
        it = real(*a, **k)
        yield next(it)
        raise V.VideoError("the disk went away")

    monkeypatch.setattr(video_mod, "iterate_video", breaks_after_one)
    assert main([*args, "-o", str(tmp_path / "o.mp4")]) == 2
    assert "the disk went away" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.mp4.frames").exists()
    monkeypatch.setattr(video_mod, "iterate_video", real)
    old = os.umask(0o022)
    try:
        assert main([*args, "-o", str(tmp_path / "o.mp4")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "o.mp4").stat().st_mode & 0o777 == 0o644  # as images, not mkstemp's 0600


def _text(p: Path) -> Path:
    p.write_text("not a video")
    return p


def _sizes(d: Path) -> Path:
    f = d / "sizes"
    f.mkdir()
    Image.new("RGB", (48, 48)).save(f / "0.png")
    Image.new("RGB", (40, 48)).save(f / "1.png")
    return f
