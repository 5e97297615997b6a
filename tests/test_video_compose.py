"""Video composed with the rest: an interrupted frame resumed, coarse-to-fine first
frames, regions and tiles, and frames over several devices."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, rand_image
from test_video import _clip, _pan, _shift_flow

from nst_jax import vgg
from nst_jax.cli import main
from nst_jax.config import Config
from nst_jax.guides import Guides
from nst_jax.video import iterate_video

CFG = Config(iterations=6, report_every=2, beta=1e-2)


def test_an_interrupted_frame_resumes_bitwise(params16):
    frames, S = _pan(3), rand_image(48, 48, 2)
    seen: list = []
    full = list(iterate_video(frames, S, params16, vgg.CAFFE, config=CFG, iters=4, flow_fn=_shift_flow,
                              snapshots=True, callback=lambda i, p: seen.append((i, p))))
    mid = next(p for i, p in seen if i == 1 and not p.finished)  # frame 1 after 2 of 4 steps
    assert mid.step == 2
    rest = list(iterate_video(frames[1:], S, params16, vgg.CAFFE, config=CFG, iters=4,
                              flow_fn=_shift_flow, earlier=[(frames[0], full[0][0])], resume=mid.snapshot))
    for (a, pa), (b, pb) in zip(full[1:], rest, strict=True):
        # bitwise: the same compiled program continues from the same restored state
        np.testing.assert_array_equal(a, b)
        assert pa.step == pb.step == 4


def test_the_first_frame_runs_coarse_to_fine(params16):
    frames, S = _pan(2), rand_image(48, 48, 2)
    out = list(iterate_video(frames, S, params16, vgg.CAFFE, config=CFG.replace(scales=2, min_size=32),
                             iters=4, flow_fn=_shift_flow))
    (_, p0), (_, p1) = out
    assert (p0.scale, p0.step) == (1, 12)  # two scales of 6 steps
    assert (p1.scale, p1.step) == (0, 4)   # later frames start near their result: full size
    assert out[1][0].shape == (48, 48, 3)


def _big_pan(n: int = 2) -> list[np.ndarray]:
    from nst_jax.image import load_image

    img = load_image(ROOT / "examples" / "content_chelsea.png", 300)
    return [img[20:116, 10 + 3 * t: 138 + 3 * t] for t in range(n)]


def test_regions_and_tiles_in_video_equal_the_whole_frames(params16):
    frames, S1, S2 = _big_pan(), rand_image(64, 64, 2), rand_image(64, 64, 5)
    m = np.zeros((2, 96, 128), np.float32)
    m[0, :, :60], m[1, :, 60:] = 1.0, 1.0
    g = Guides(regions=m, content=np.linspace(0.3, 1, 96 * 128, dtype=np.float32).reshape(96, 128))
    outs = [np.stack([o for o, _ in iterate_video(frames, [S1, S2], params16, vgg.CAFFE,
                                                  config=CFG.replace(tile=tile), iters=4,
                                                  flow_fn=_shift_flow, guides=g)])
            for tile in (0, 64)]
    # 2 x 2 tiles against the whole frame: equal to float rounding, which Adam's first
    # steps amplify where a gradient is ~0 (as for single images, test_tiling)
    assert float(np.mean(np.abs(outs[0] - outs[1]))) < 1e-4


def test_cli_video_with_regions_and_a_content_mask(work, tmp_path):
    from test_cli_regions import _mask

    clip = _clip(tmp_path / "clip", 2)
    sky = _mask(tmp_path / "sky.png", 48, 48)
    out = tmp_path / "frames"
    assert main(["video", str(clip), f"{work / 's.png'}:{sky}", str(work / "s.png"), "--weights",
                 str(work / "tiny.h5"), "--size", "48", "--iters-first", "4", "--iters", "2",
                 "--report-every", "2", "--beta", "1e-2", "--content-mask", str(sky), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.glob("0*.png")) == ["000000.png", "000001.png"]


DEVICES = r"""
import json, sys
sys.path.insert(0, "tests")
import jax, numpy as np
from conftest import rand_image, tiny_params
from test_video import _shift_flow
from test_video_compose import _big_pan
from nst_jax import vgg
from nst_jax.config import Config
from nst_jax.layout import Layout
from nst_jax.video import iterate_video

params = tiny_params()
frames, S = _big_pan(), rand_image(64, 64, 2)
out = {}
for name, tile, lay in (("one", 0, Layout()), ("rows", 0, Layout.by_rows()),
                        ("one_tiled", 64, Layout()), ("tiles", 64, Layout.over_tiles())):
    cfg = Config(iterations=6, report_every=2, beta=1e-2, tile=tile)
    out[name] = np.stack([o for o, _ in iterate_video(frames, S, params, vgg.CAFFE, config=cfg, iters=4,
                                                      flow_fn=_shift_flow, layout=lay)])
print(json.dumps({"rows": float(np.mean(np.abs(out["rows"] - out["one"]))),
                  "tiles": float(np.mean(np.abs(out["tiles"] - out["one_tiled"])))}))
"""


@pytest.mark.slow
def test_video_frames_over_four_devices_equal_one():
    from test_sharding import _env

    r = subprocess.run([sys.executable, "-c", DEVICES], capture_output=True, text=True, env=_env(4),
                       timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    # another program (rows: XLA's partitioned convolutions; tiles: a psum of partial sums):
    # equal to float rounding through a few Adam steps
    assert d["rows"] < 1e-5 and d["tiles"] < 1e-5, d


@pytest.mark.slow
def test_cli_video_interrupted_mid_frame_resumes_it(work, tmp_path):
    import signal
    import time

    from test_image import _read_png16

    clip = _clip(tmp_path / "clip", 3)
    cli = [sys.executable, "-c", "import sys; from nst_jax.cli import main; sys.exit(main())"]
    base = [*cli, "video", str(clip), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
            "--size", "48", "--iters-first", "4", "--iters", "3000",
            "--report-every", "2", "--beta", "1e-2"]
    with subprocess.Popen([*base, "-o", str(tmp_path / "f")], stderr=subprocess.PIPE, text=True) as p:
        for line in p.stderr:
            if "frame 1/3" in line:
                break
        time.sleep(2.0)  # into frame 2's 3000 steps (about 8 s here)
        p.send_signal(signal.SIGINT)
        err = p.stderr.read()
        assert p.wait(timeout=120) == 130, err
    assert "1 finished frame(s) and frame 2's state so far kept" in err, err
    assert (tmp_path / "f" / "partial.ckpt").exists()
    r = subprocess.run([*base, "-o", str(tmp_path / "f"), "--resume"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    assert "frame 1/3" not in r.stderr and not (tmp_path / "f" / "partial.ckpt").exists()
    ref = subprocess.run([*base, "-o", str(tmp_path / "ref")], capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stderr
    for t in range(3):
        a = _read_png16((tmp_path / "ref" / f"{t:06d}.png").read_bytes())[0]
        b = _read_png16((tmp_path / "f" / f"{t:06d}.png").read_bytes())[0]
        # bitwise: the resumed frame continues the same program from the saved state, held
        # to the exact earlier output (recent.npz; rounded PNGs would let 3000 steps drift)
        np.testing.assert_array_equal(a, b)


def test_masks_that_move_with_the_clip(params16, tmp_path, work, capsys):
    """``guides(t)`` per frame in the library (the same masks each frame: bitwise the fixed
    ones; other masks: another image), and ``STYLE:MASKDIR`` on the command line."""
    from PIL import Image

    frames, S1, S2 = _pan(2), rand_image(32, 32, 2), rand_image(32, 32, 5)
    m = np.zeros((2, 48, 48), np.float32)
    m[0, :24], m[1, 24:] = 1.0, 1.0
    g = Guides(regions=m)
    kw = {"config": CFG, "iters": 4, "flow_fn": _shift_flow}
    fixed = [o for o, _ in iterate_video(frames, [S1, S2], params16, vgg.CAFFE, guides=g, **kw)]
    same = [o for o, _ in iterate_video(frames, [S1, S2], params16, vgg.CAFFE, guides=lambda t: g, **kw)]
    for a, b in zip(fixed, same, strict=True):
        np.testing.assert_array_equal(a, b)  # the same program on the same inputs
    moved = Guides(regions=m[:, ::-1].copy())
    other = [o for o, _ in iterate_video(frames, [S1, S2], params16, vgg.CAFFE,
                                         guides=lambda t: g if t == 0 else moved, **kw)]
    np.testing.assert_array_equal(other[0], fixed[0])
    assert float(np.mean(np.abs(other[1] - fixed[1]))) > 1e-3
    # the command line: a folder of masks, one per frame; too few is refused up front
    clip = _clip(tmp_path / "clip", 2)
    masks = tmp_path / "masks"
    masks.mkdir()
    for t in range(2):
        a = np.zeros((48, 48), np.uint8)
        a[: 20 + 8 * t] = 255
        Image.fromarray(a).save(masks / f"{t:03d}.png")
    base = ["video", str(clip), f"{work / 's.png'}:{masks}", str(work / "s.png"), "--weights",
            str(work / "tiny.h5"), "--size", "48", "--iters-first", "4", "--iters", "2",
            "--report-every", "2", "--beta", "1e-2"]
    assert main([*base, "-o", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").glob("0*.png")) == ["000000.png", "000001.png"]
    (masks / "001.png").unlink()
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "g")]) == 2
    assert "holds 1 mask image(s), but frames 0 to 1 need one each" in capsys.readouterr().err
