"""[I/O] Load images as float32 RGB in [0, 1]; save atomically with metadata."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from nst_jax.weights import atomic_path


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


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` float32 RGB in [0, 1].

    Applies the EXIF orientation; composites transparency on white; converts
    grayscale, palette, CMYK and 16-bit images. With ``size``, resizes (Lanczos) so the
    longest side is ``size``, before anything else is computed; JPEGs are decoded at
    reduced scale when much larger. Refuses decompression bombs (Pillow's limit).

    Raises:
      ImageError: missing file, a directory, not an image, truncated or too large.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image not found: {p}")
    if p.is_dir():
        raise ImageError(f"expected an image file, got a directory: {p}")
    if size is not None and size <= 0:
        raise ImageError(f"size: expected a positive number of pixels, got {size}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                if size is not None and im.format == "JPEG":
                    im.draft("RGB", (size, size))  # decode large JPEGs at a reduced scale
                im.load()
                im = ImageOps.exif_transpose(im)
                if size is not None and max(im.size) != size:
                    s = size / max(im.size)
                    new = (max(1, round(im.width * s)), max(1, round(im.height * s)))
                    if im.mode not in ("RGB", "RGBA", "L", "LA"):
                        im = Image.fromarray((_to_rgb(im) * 255).round().astype(np.uint8))
                    im = im.resize(new, Image.Resampling.LANCZOS)
                return _to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{p}: image too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"not an image (or an unsupported format): {p}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: truncated or corrupt ({e})") from None


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` floats in [0, 1] -> uint8, clipped and rounded."""
    return (np.clip(np.asarray(rgb, np.float64), 0, 1) * 255).round().astype(np.uint8)


def save_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    metadata: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    sidecar: bool = True,
) -> Path:
    """Write ``rgb`` (``(H, W, 3)`` in [0, 1]) atomically as PNG (default) or JPEG.

    The format follows the extension (``.png``, ``.jpg``/``.jpeg``). ``metadata`` is
    stored as JSON in the PNG text chunk ``nst_jax`` (JPEG: the comment) and, with
    ``sidecar``, in ``<path>.json``. Existing files are refused unless ``overwrite``.

    Raises:
      ImageError: the file exists, the extension is unknown or the folder is unwritable.
    """
    p = Path(path)
    ext = p.suffix.lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(ext)
    if fmt is None:
        raise ImageError(f"output {p}: unknown extension {ext!r}, expected .png, .jpg or .jpeg")
    side = p.with_name(p.name + ".json")
    if not overwrite:
        for q in (p, side) if sidecar else (p,):
            if q.exists():
                raise ImageError(f"{q} exists; pass --overwrite to replace it")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise ImageError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise ImageError(f"output folder is not writable: {folder}")
    text = json.dumps(dict(metadata or {}), indent=1, sort_keys=True, default=str)
    im = Image.fromarray(to_uint8(rgb), "RGB")
    with atomic_path(p) as tmp:
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_text("nst_jax", text)
            im.save(tmp, "PNG", pnginfo=info)
        else:
            im.save(tmp, "JPEG", quality=95, comment=text.encode())
    if sidecar:
        with atomic_path(side) as tmp:
            tmp.write_text(text + "\n")
    return p


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``nst_jax`` metadata stored in a PNG/JPEG written by :func:`save_image`."""
    with Image.open(path) as im:
        raw = im.info.get("nst_jax") or im.info.get("comment") or "{}"
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def contact_sheet(
    images: np.ndarray, labels: list[str], rows: int, cols: int, *, title: str = ""
) -> np.ndarray:
    """Lay ``images (n, H, W, 3)`` out on a ``rows x cols`` grid with a label under each.

    Returns an ``(H', W', 3)`` float image in [0, 1] (white background, black text).
    """
    from PIL import ImageDraw, ImageFont

    n, h, w, _ = images.shape
    if n != rows * cols or len(labels) != n:
        raise ValueError(f"contact sheet: {n} images and {len(labels)} labels for a {rows}x{cols} grid")
    font = ImageFont.load_default(size=max(10, min(16, w // 14)))
    line_h = font.size + 4
    n_lines = max(label.count("\n") + 1 for label in labels)
    pad, band = 6, n_lines * line_h + 4
    top = line_h + 2 * pad if title else pad
    sheet = Image.new("RGB", (cols * (w + pad) + pad, top + rows * (h + band + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill="black", font=font)
    for i in range(n):
        r, c = divmod(i, cols)
        x, y = pad + c * (w + pad), top + r * (h + band + pad)
        sheet.paste(Image.fromarray(to_uint8(images[i])), (x, y))
        draw.multiline_text((x + 2, y + h + 2), labels[i], fill="black", font=font, spacing=4)
    return np.asarray(sheet, np.float32) / 255.0


def save_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write a text file atomically, refusing to replace one unless ``overwrite``."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise ImageError(f"{p} exists; pass --overwrite to replace it")
    with atomic_path(p) as tmp:
        tmp.write_text(text)
    return p
