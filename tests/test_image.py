"""Image loading for every mode users really have, and atomic saving with metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nst_jax import image as I


def _grad(h=6, w=8):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 30 % 256, y * 40 % 256, (x + y) * 15 % 256], -1).astype(np.uint8)


def test_rgb_png(tmp_path):
    a = _grad()
    Image.fromarray(a).save(tmp_path / "a.png")
    got = I.load_image(tmp_path / "a.png")
    assert got.dtype == np.float32 and got.shape == (6, 8, 3)
    np.testing.assert_allclose(got, a / 255.0, atol=1e-7)


def test_grayscale_and_palette(tmp_path):
    Image.fromarray(_grad()[..., 0]).save(tmp_path / "g.png")
    g = I.load_image(tmp_path / "g.png")
    assert g.shape == (6, 8, 3)
    np.testing.assert_array_equal(g[..., 0], g[..., 2])
    Image.fromarray(_grad()).convert("P").save(tmp_path / "p.png")
    assert I.load_image(tmp_path / "p.png").shape == (6, 8, 3)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 255
    a[:, :2, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    got = I.load_image(tmp_path / "a.png")
    np.testing.assert_allclose(got[0, 0], [1, 0, 0])
    np.testing.assert_allclose(got[0, 3], [1, 1, 1])


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(_grad()).convert("CMYK").save(tmp_path / "c.jpg")
    got = I.load_image(tmp_path / "c.jpg")
    assert got.shape == (6, 8, 3)
    np.testing.assert_allclose(got, _grad() / 255.0, atol=0.1)


def test_16bit_png_keeps_range(tmp_path):
    a = (np.linspace(0, 65535, 24).reshape(4, 6)).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    got = I.load_image(tmp_path / "d.png")
    np.testing.assert_allclose(got[..., 0], a / 65535.0, atol=1e-6)


def test_exif_rotation_applied(tmp_path):
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10] = 255  # left half white in the stored pixels
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
    got = I.load_image(tmp_path / "r.jpg")
    assert got.shape == (20, 10, 3)  # displayed upright: portrait
    assert got[:10].mean() > 0.9 and got[10:].mean() < 0.1  # white on top after rotation


def test_resize_longest_side(tmp_path):
    Image.fromarray(np.zeros((300, 600, 3), np.uint8)).save(tmp_path / "big.jpg")
    assert I.load_image(tmp_path / "big.jpg", 64).shape == (32, 64, 3)
    Image.fromarray(np.zeros((30, 15, 3), np.uint8)).save(tmp_path / "small.png")
    assert I.load_image(tmp_path / "small.png", 60).shape == (60, 30, 3)


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "b.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(I.ImageError, match="image too large"):
        I.load_image(tmp_path / "b.png")


@pytest.mark.parametrize(("make", "msg"), [
    (lambda p: None, "image not found"),
    (lambda p: p.mkdir(), "expected an image file, got a directory"),
    (lambda p: p.write_text("not an image"), "not an image"),
])
def test_load_errors(tmp_path, make, msg):
    p = tmp_path / "x.png"
    make(p)
    with pytest.raises(I.ImageError, match=msg):
        I.load_image(p)


def test_truncated_image(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(I.ImageError, match="truncated or corrupt"):
        I.load_image(tmp_path / "t.png")


def test_save_png_with_metadata_and_sidecar(tmp_path):
    rgb = np.random.default_rng(0).uniform(size=(5, 7, 3))
    out = I.save_image(tmp_path / "o.png", rgb, {"alpha": 1.5})
    with Image.open(out) as im:
        back = np.asarray(im, np.float64) / 255
    np.testing.assert_allclose(back, rgb, atol=0.5 / 255 + 1e-9)
    assert I.read_metadata(out) == {"alpha": 1.5}
    assert json.loads((tmp_path / "o.png.json").read_text()) == {"alpha": 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "o.png.json"]


def test_save_jpeg_by_extension(tmp_path):
    out = I.save_image(tmp_path / "o.jpg", np.full((4, 4, 3), 0.5), {"k": 1})
    with Image.open(out) as im:
        assert im.format == "JPEG"
    assert I.read_metadata(out) == {"k": 1}


def test_save_refuses_overwrite(tmp_path):
    (tmp_path / "o.png").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        I.save_image(tmp_path / "o.png", np.zeros((2, 2, 3)))
    assert (tmp_path / "o.png").read_bytes() == b"precious"
    I.save_image(tmp_path / "o.png", np.zeros((2, 2, 3)), overwrite=True)
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (2, 2)


def test_save_errors(tmp_path):
    with pytest.raises(I.ImageError, match=r"unknown extension '\.gif'"):
        I.save_image(tmp_path / "o.gif", np.zeros((2, 2, 3)))
    with pytest.raises(OSError, match="output folder does not exist"):
        I.save_image(tmp_path / "nope" / "o.png", np.zeros((2, 2, 3)))


def _read_png16(data: bytes) -> tuple[np.ndarray, dict[bytes, bytes]]:
    """An independent reader of the one PNG layout encode_png16 writes: chunks checked
    against their CRCs, IDAT inflated, filter bytes stripped, big-endian uint16 samples."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    w, h, depth, ctype = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, ctype) == (16, 2)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + w * 6)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].copy().view(">u2").reshape(h, w, 3).astype(np.uint16), chunks


def test_png16_round_trip_and_metadata(tmp_path):
    from PIL import Image

    from nst_jax import image as I

    rgb = np.linspace(0, 1, 5 * 7 * 3).reshape(5, 7, 3).astype(np.float32)
    p = I.save_image(tmp_path / "deep.png", rgb, {"name": "żółw"}, bit_depth=16)
    samples, chunks = _read_png16(p.read_bytes())
    assert chunks[b"iTXt"].startswith(b"nst_jax\0\0\0\0\0")
    np.testing.assert_array_equal(samples, np.round(rgb.astype(np.float64) * 65535).astype(np.uint16))
    assert len(np.unique(samples)) == rgb.size  # 105 distinct levels; 8 bits would merge some
    with Image.open(p) as im:  # a standard reader accepts it, metadata included
        assert im.size == (7, 5) and json.loads(im.info["nst_jax"])["name"] == "żółw"
    assert json.loads((tmp_path / "deep.png.json").read_text())["name"] == "żółw"


def test_png16_refused_for_jpeg(tmp_path):
    from nst_jax import image as I

    with pytest.raises(I.ImageError, match="JPEG has 8 bits per channel only"):
        I.save_image(tmp_path / "x.jpg", np.zeros((2, 2, 3)), bit_depth=16)
    assert not (tmp_path / "x.jpg").exists()
