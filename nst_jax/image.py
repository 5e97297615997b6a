"""[I/O] Load images as float32 RGB in [0, 1]; save atomically with metadata."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from nst_jax import files


class ImageError(ValueError):
    """An input image cannot be used, or an output cannot be written."""


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> ``(H, W, 3)`` float32 RGB in [0, 1].

    Alpha is composited on white; palette, grayscale, CMYK, YCbCr... are converted by
    Pillow; 16-bit and 32-bit grayscale (``I;16``, ``I``) keep their full range.
    """
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        if im.mode == "F":
            hi = max(1.0, float(a.max()))
        g = np.clip(a / hi, 0, 1).astype(np.float32)
        return np.repeat(g[..., None], 3, axis=-1)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB"), np.float32) / 255.0


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image not found: {p}")
    if p.is_dir():
        raise ImageError(f"expected an image file, got a directory: {p}")
    if not p.is_file():  # a FIFO, socket or device would block or never end
        raise ImageError(f"expected a regular image file, got a special file: {p}")
    return p


@contextlib.contextmanager
def _opened(path: str | os.PathLike) -> Iterator[Image.Image]:
    """``Image.open`` of a regular file, every failure turned into one :class:`ImageError`."""
    p = _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{p}: image too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"not an image (or an unsupported format): {p}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: truncated or corrupt ({e})") from None


def _fit(w: int, h: int, size: int | None) -> tuple[int, int]:
    """``(w, h)`` scaled so the longest side is ``size`` (rounded, at least 1)."""
    if size is None or max(w, h) == size:
        return w, h
    s = size / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` float32 RGB in [0, 1].

    Applies the EXIF orientation; composites transparency on white; converts
    grayscale, palette, CMYK and 16-bit images. With ``size``, resizes (Lanczos) so the
    longest side is ``size``, before anything else is computed; JPEGs are decoded at
    reduced scale when much larger. Refuses decompression bombs (Pillow's limit).

    Raises:
      ImageError: missing file, a directory, not an image, truncated or too large.
    """
    if size is not None and size <= 0:
        raise ImageError(f"size: expected a positive number of pixels, got {size}")
    with _opened(path) as im:
        if size is not None and im.format == "JPEG":
            im.draft("RGB", (size, size))  # decode large JPEGs at a reduced scale
        im.load()
        im = ImageOps.exif_transpose(im)
        new = _fit(*im.size, size)
        if new != im.size:
            if im.mode not in ("RGB", "RGBA", "L", "LA"):
                im = Image.fromarray((_to_rgb(im) * 255).round().astype(np.uint8))
            im = im.resize(new, Image.Resampling.LANCZOS)
        return _to_rgb(im)


def image_shape(path: str | os.PathLike, size: int | None = None) -> tuple[int, int]:
    """``(H, W)`` that :func:`load_image` will return, read from the header only (no
    pixels are decoded), so a run can be checked before anything large is allocated.

    Raises:
      ImageError: as :func:`load_image`.
    """
    with _opened(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):  # EXIF rotations by 90 degrees swap the sides
        w, h = h, w
    w, h = _fit(w, h, size)
    return h, w


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` floats in [0, 1] -> uint8, clipped and rounded."""
    return (np.clip(np.asarray(rgb, np.float64), 0, 1) * 255).round().astype(np.uint8)


FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def format_of(path: str | os.PathLike) -> str:
    """``"PNG"`` or ``"JPEG"`` from the extension; :class:`ImageError` otherwise."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ImageError(f"output {p}: unknown extension {p.suffix.lower()!r}, "
                         "expected .png, .jpg or .jpeg")
    return fmt


def metadata_text(metadata: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(metadata or {}), indent=1, sort_keys=True, default=str)


BIT_DEPTHS = (8, 16)


def encode_png16(rgb: np.ndarray, text: str) -> bytes:
    """``rgb`` (``(H, W, 3)`` in [0, 1]) as a 16-bit-per-channel RGB PNG (colour type 2,
    bit depth 16, big-endian samples ``round(65535 x)``), ``text`` in an ``iTXt`` chunk
    keyed ``nst_jax`` (UTF-8).

    Written by hand (PNG is a few chunks around zlib data, ISO/IEC 15948): Pillow has
    no 16-bit RGB image mode to save from. Smooth gradients of large prints then keep
    65536 levels instead of 256 (no banding).
    """
    import struct
    import zlib

    a = np.asarray(rgb, np.float64)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"rgb: expected shape (H, W, 3), got {a.shape}")
    h, w, _ = a.shape
    samples = np.round(np.clip(np.nan_to_num(a), 0.0, 1.0) * 65535.0).astype(">u2")
    rows = np.concatenate([np.zeros((h, 1), np.uint8),           # filter type 0 per row
                           samples.view(np.uint8).reshape(h, w * 6)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return b"".join([
        b"\x89PNG\r\n\x1a\n",
        chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)),
        chunk(b"iTXt", b"nst_jax\0\0\0\0\0" + text.encode("utf-8")),
        chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
        chunk(b"IEND", b""),
    ])


def encode_image(rgb: np.ndarray, fmt: str, metadata: Mapping[str, Any] | None = None,
                 *, bit_depth: int = 8) -> bytes:
    """``rgb`` (``(H, W, 3)`` in [0, 1]) as PNG or JPEG file bytes, ``metadata`` as JSON in
    the PNG text chunk ``nst_jax`` (JPEG: the comment). ``bit_depth=16``: a 16-bit PNG
    (:func:`encode_png16`); JPEG has 8 bits only."""
    import io

    text = metadata_text(metadata)
    if bit_depth not in BIT_DEPTHS:
        raise ImageError(f"bit depth: expected 8 or 16, got {bit_depth}")
    if bit_depth == 16:
        if fmt != "PNG":
            raise ImageError(f"bit depth 16: {fmt} has 8 bits per channel only; write a .png")
        return encode_png16(rgb, text)
    im = Image.fromarray(to_uint8(rgb), "RGB")
    buf = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("nst_jax", text)
        im.save(buf, "PNG", pnginfo=info)
    else:
        im.save(buf, "JPEG", quality=95, comment=text.encode())
    return buf.getvalue()


def sidecar_of(path: str | os.PathLike) -> Path:
    """``out.png`` -> ``out.png.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def save_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    metadata: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    sidecar: bool = True,
    bit_depth: int = 8,
) -> Path:
    """Write ``rgb`` (``(H, W, 3)`` in [0, 1]) atomically as PNG (default) or JPEG.

    The format follows the extension (``.png``, ``.jpg``/``.jpeg``). ``metadata`` is
    stored as JSON in the PNG text chunk ``nst_jax`` (JPEG: the comment) and, with
    ``sidecar``, in ``<path>.json``. The image and its sidecar are written all or
    nothing. Existing files are refused unless ``overwrite`` (the image's name is
    claimed atomically: see :mod:`nst_jax.files`). ``bit_depth=16``: 16 bits per
    channel (PNG only).

    Raises:
      ImageError: the extension is unknown.
      OSError: :class:`nst_jax.files.OutputError` (exists, folder missing or
        unwritable, name too long) or the write itself failed (e.g. disk full).
    """
    p = Path(path)
    fmt = format_of(p)
    side = sidecar_of(p)
    for q in (p, side) if sidecar else (p,):
        files.check_new_name(q, overwrite=overwrite)
    data = encode_image(rgb, fmt, metadata, bit_depth=bit_depth)
    files.write_bytes(p, data, overwrite=overwrite)
    if sidecar:
        try:
            files.write_bytes(side, (metadata_text(metadata) + "\n").encode(), overwrite=overwrite)
        except OSError:
            p.unlink(missing_ok=True)  # ours, just written: the pair is all or nothing
            raise
    return p


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``nst_jax`` metadata stored in a PNG/JPEG written by :func:`save_image`."""
    with Image.open(path) as im:
        raw = im.info.get("nst_jax") or im.info.get("comment") or "{}"
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


Box = tuple[int, int, int, int]  # (left, top, right, bottom), pixels


@dataclasses.dataclass
class SheetLayout:
    """Where everything goes on a contact sheet (see :func:`sheet_layout`)."""

    size: tuple[int, int]          # (width, height) of the sheet
    title_lines: list[str]         # the title, wrapped to the sheet's width
    title_boxes: list[Box]
    image_xy: list[tuple[int, int]]
    label_xy: list[tuple[int, int]]
    label_boxes: list[Box]         # measured extent of each label's text


def _font(h: int, w: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=max(10, min(16, w // 14)))


def _wrap(text: str, width: int, measure: Any) -> list[str]:
    """Greedy word wrap of ``text`` so each line measures at most ``width`` pixels (a
    single word wider than that gets a line of its own)."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            cand = f"{line} {word}" if line else word
            if line and measure(cand) > width:
                lines.append(line)
                line = word
            else:
                line = cand
        lines.append(line)
    return lines


def sheet_layout(h: int, w: int, labels: list[str], rows: int, cols: int, *,
                 title: str = "", font: Any = None) -> SheetLayout:
    """Lay out a ``rows x cols`` sheet of ``h x w`` images with a label under each.

    Text is measured with Pillow's ``textbbox``: each column is as wide as its widest
    label (or the image), each row's label band as tall as its tallest label, and the
    title wraps to the sheet's width, so no text is cut and no two labels overlap at
    any image size.
    """
    from PIL import ImageDraw

    font = font or _font(h, w)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, spacing = 6, 4

    def bbox(text: str) -> Box:
        return draw.multiline_textbbox((0, 0), text, font=font, spacing=spacing)

    sizes = [bbox(t) for t in labels]
    col_w = [max([w, *(sizes[r * cols + c][2] + 2 for r in range(rows))]) for c in range(cols)]
    band = [max(sizes[r * cols + c][3] for c in range(cols)) + spacing for r in range(rows)]
    width = pad + sum(cw + pad for cw in col_w)
    title_lines = _wrap(title, width - 2 * pad, lambda t: bbox(t)[2]) if title else []
    title_boxes, y = [], pad
    for line in title_lines:
        b = bbox(line or " ")
        title_boxes.append((pad + b[0], y + b[1], pad + b[2], y + b[3]))
        y += b[3] + spacing
    top = y + pad if title_lines else pad
    image_xy, label_xy, label_boxes = [], [], []
    y = top
    for r in range(rows):
        x = pad
        for c in range(cols):
            i = r * cols + c
            image_xy.append((x, y))
            lx, ly = x + 2, y + h + 2
            label_xy.append((lx, ly))
            b = sizes[i]
            label_boxes.append((lx + b[0], ly + b[1], lx + b[2], ly + b[3]))
            x += col_w[c] + pad
        y += h + 2 + band[r] + pad
    return SheetLayout((width, y), title_lines, title_boxes, image_xy, label_xy, label_boxes)


def contact_sheet(
    images: np.ndarray, labels: list[str], rows: int, cols: int, *, title: str = ""
) -> np.ndarray:
    """Lay ``images (n, H, W, 3)`` out on a ``rows x cols`` grid with a label under each
    (placed by :func:`sheet_layout`: nothing cut, nothing overlapping).

    Returns an ``(H', W', 3)`` float image in [0, 1] (white background, black text).
    """
    from PIL import ImageDraw

    n, h, w, _ = images.shape
    if n != rows * cols or len(labels) != n:
        raise ValueError(f"contact sheet: {n} images and {len(labels)} labels for a {rows}x{cols} grid")
    font = _font(h, w)
    lay = sheet_layout(h, w, labels, rows, cols, title=title, font=font)
    sheet = Image.new("RGB", lay.size, "white")
    draw = ImageDraw.Draw(sheet)
    for line, box in zip(lay.title_lines, lay.title_boxes, strict=True):
        draw.text((6, box[1] - draw.textbbox((0, 0), line or " ", font=font)[1]), line,
                  fill="black", font=font)
    for i in range(n):
        sheet.paste(Image.fromarray(to_uint8(images[i])), lay.image_xy[i])
        draw.multiline_text(lay.label_xy[i], labels[i], fill="black", font=font, spacing=4)
    return np.asarray(sheet, np.float32) / 255.0


def save_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write a text file atomically, refusing to replace one unless ``overwrite``."""
    files.check_new_name(path, overwrite=overwrite)
    return files.write_bytes(path, text.encode(), overwrite=overwrite)
