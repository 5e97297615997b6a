"""The command line's regions and masks: STYLE:MASK, --mask-colors, --style-regions,
--content-mask, --mask-resize, and every refusal as one ``error:`` line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FAST
from PIL import Image

from nst_jax.cli import stylize_main


def _mask(path, h: int = 48, w: int = 40, top: bool = True, mode: str = "L"):
    """White on the top (or bottom) half: the content of ``work`` is 40x48."""
    a = np.zeros((h, w), np.uint8)
    if top:
        a[: h // 2] = 255
    else:
        a[h // 2:] = 255
    Image.fromarray(a).convert(mode).save(path)
    return path


def _labels(path, colours, h: int = 48, w: int = 40, jpeg: bool = False):
    a = np.zeros((h, w, 3), np.uint8)
    for i, c in enumerate(colours):
        a[i * h // len(colours):(i + 1) * h // len(colours)] = c
    Image.fromarray(a).save(path, "JPEG" if jpeg else "PNG", quality=90)
    return path


def _run(work, styles, *args, out="r.png"):
    argv = [str(work / "c.png"), *styles, "--weights", str(work / "tiny.h5"), *FAST, "--overwrite",
            "-o", str(work / out), *args]
    return stylize_main(argv)


def test_style_mask_regions_run_and_are_recorded(work, tmp_path, capsys):
    sky = _mask(tmp_path / "sky.png")
    s = str(work / "s.png")
    assert _run(work, [f"{s}:{sky}", s]) == 0
    err = capsys.readouterr().err
    assert "regions: 1 = " + str(sky) + " <- s.png; 2 = the rest <- s.png" in err
    meta = json.loads((work / "r.png.json").read_text())
    assert meta["settings"]["style"] == [s, s]
    assert meta["settings"]["style_masks"] == [str(sky), None]
    with Image.open(work / "r.png") as im:
        assert im.size == (27, 32)


def test_mask_colors_jpeg_and_content_mask_and_style_regions(work, tmp_path, capsys):
    labels = _labels(tmp_path / "l.jpg", [(255, 0, 0), (0, 0, 255)], 240, 200, jpeg=True)
    keep = _mask(tmp_path / "keep.png", top=False)
    half = _mask(tmp_path / "half.png", 40, 40)  # the style image is 40x40
    s = str(work / "s.png")
    assert _run(work, [s, s], "--mask-colors", str(labels), "--content-mask", str(keep),
                "--style-regions", str(half), "-", "--style-loss", "meancov", "--size", "64") == 0
    err = capsys.readouterr().err
    assert "regions: 1 = #fe0000 <- s.png; 2 = #0000fe <- s.png" in err, err


def test_a_mask_name_with_a_colon(work, tmp_path, capsys):
    from nst_jax.cli.regions import split_styles

    (tmp_path / "m:k").mkdir()
    mask = _mask(tmp_path / "m:k" / "sky:1.png")
    s = str(work / "s.png")
    assert split_styles([f"{s}:{mask}", s]) == ([s, s], [str(mask), None])
    assert _run(work, [f"{s}:{mask}", s], out="colon.png") == 0
    capsys.readouterr()
    # no split names an existing style: the error says what was looked for
    assert _run(work, [f"{tmp_path / 'nope.png'}:{mask}", s], out="colon2.png") == 2
    err = capsys.readouterr().err
    assert "style image not found" in err and "nope.png" in err and err.count("\n") == 1, err


def test_regions_in_tiles_equal_the_whole_image(work, tmp_path):
    """STYLE:MASK and a content mask at --tile 64 (2 x 3 windows of 128 px): the image
    of the untiled run (16-bit PNGs; equal to float rounding, another program)."""
    mask = _mask(tmp_path / "m.png")
    cm = _mask(tmp_path / "cm.png", top=False)
    outs = []
    for tile in ("0", "64"):
        out = tmp_path / f"t{tile}.png"
        args = [f"{work / 's.png'}:{mask}", str(work / "s.png")]
        assert _run(work, args, "--size", "128", "--tile", tile, "--content-mask", str(cm),
                    "--bit-depth", "16", "-o", str(out)) == 0
        from test_image import _read_png16

        outs.append(_read_png16(out.read_bytes())[0].astype(np.float64) / 65535)
    assert float(np.mean(np.abs(outs[0] - outs[1]))) < 1e-4


def test_stretch_allows_another_aspect_ratio(work, tmp_path):
    wide = _mask(tmp_path / "wide.png", 48, 80)
    assert _run(work, [f"{work / 's.png'}:{wide}", str(work / "s.png")], "--mask-resize", "stretch") == 0


@pytest.mark.parametrize(("make", "extra", "msg"), [
    (lambda d, s: [f"{s}:{d / 'missing.png'}", s], [], "mask of s.png: image not found"),
    (lambda d, s: [f"{s}:{_mask(d / 'w.png', 48, 80)}", s], [],
     "mask of s.png: 80x48 has aspect ratio 1.667, its image c.png 40x48 has 0.833 (more than 1% "
     "apart); stretch it on purpose with --mask-resize stretch"),
    (lambda d, s: [s, s], ["--mask-colors", "LABELS3"],
     "3 colours (#ff0000, #00ff00, #0000ff) for 2 style image(s); expected one colour per style"),
    (lambda d, s: [f"{s}:{_corner(d / 'c.png')}", s], [],
     "region 1 (s.png): empty at conv3_1 (all zeros once carried to its 6x8 grid)"),
    (lambda d, s: [f"{s}:{_corner(d / 'c.png', 2)}", s], ["--style-loss", "w2"],
     "needs at least 2 to estimate a covariance"),
    (lambda d, s: [s], ["--style-regions", "-", "-"], "--style-regions: expected 1 masks"),
    (lambda d, s: [f"{s}:{_mask(d / 'm.png')}", s], ["--mask-colors", "LABELS3"],
     "--mask-colors with STYLE:MASK: give the regions one way or the other"),
    (lambda d, s: [s], ["--content-mask", "NOTIMAGE"], "--content-mask: not an image"),
])
def test_refusals(work, tmp_path, capsys, make, extra, msg):
    labels3 = _labels(tmp_path / "l3.png", [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    notimage = tmp_path / "n.png"
    notimage.write_text("hello")
    extra = [str(labels3) if a == "LABELS3" else str(notimage) if a == "NOTIMAGE" else a for a in extra]
    assert _run(work, make(tmp_path, str(work / "s.png")), *extra) == 2
    err = capsys.readouterr().err
    assert msg in err and err.startswith("error: ") and "Traceback" not in err
    assert err.count("\n") == 1


def _corner(path, px: int = 1):
    """A mask with a ``px x px`` white corner in the last row/column region."""
    a = np.zeros((48, 40), np.uint8)
    a[-px:, -px:] = 255
    Image.fromarray(a).save(path)
    return path
