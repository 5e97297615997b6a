"""[host] The studio's regions, content-strength masks, devices and upload store.

A painted mask arrives as one PNG the size of the content (the page's canvas): each
style's brush colour (:data:`PALETTE`, style ``k`` gets colour ``k``) marks that
style's region, and unpainted pixels (alpha 0, or black) are "the rest", which goes
to the styles nobody painted, as ``STYLE:MASK`` does on the command line. A content
mask is a grey image: 1 (white) keeps the photo, 0 frees the pixel to follow the style.
Nothing here knows about HTTP: errors are ``ValueError`` messages for the form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Brush colours, style k -> PALETTE[k] (the page uses the same list, /api/meta).
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60))
#: RGB distance (0-255) within which a pixel counts as a brush colour (anti-aliased edges).
TOLERANCE = 60.0


def painted_regions(rgba: np.ndarray, n_styles: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(regions (R, H, W) float32, region_of (one per style))`` of a painted mask.

    ``rgba``: ``(H, W, 4)`` or ``(H, W, 3)`` uint8. A pixel belongs to style ``k``'s
    region where it is opaque and nearest to ``PALETTE[k]`` within :data:`TOLERANCE`;
    every other pixel is the rest, shared by the styles with no paint (blended). With
    every style painted, unpainted pixels get no style.

    Raises:
      ValueError: no paint at all, paint of a colour with no style, or more styles than
        colours.
    """
    if n_styles > len(PALETTE):
        raise ValueError(f"regions: at most {len(PALETTE)} styles can be painted, got {n_styles}")
    rgb = rgba[..., :3].astype(np.float32)
    opaque = rgba[..., 3] > 127 if rgba.shape[-1] == 4 else np.any(rgba[..., :3] > 0, axis=-1)
    pal = np.asarray(PALETTE, np.float32)
    d = np.sqrt(((rgb[:, :, None, :] - pal[None, None]) ** 2).sum(-1))       # (H, W, P)
    k = np.argmin(d, axis=-1)
    painted = opaque & (np.min(d, axis=-1) <= TOLERANCE)
    if not painted.any():
        raise ValueError("regions: nothing is painted; paint each style's region (or clear the mask)")
    used = sorted(set(np.unique(k[painted]).tolist()))
    if used[-1] >= n_styles:
        raise ValueError(f"regions: paint in colour {used[-1] + 1} but only {n_styles} style(s) chosen")
    masks, region_of = [], [-1] * n_styles
    for s in used:
        region_of[s] = len(masks)
        masks.append((painted & (k == s)).astype(np.float32))
    rest = [s for s in range(n_styles) if region_of[s] < 0]
    if rest:
        for s in rest:
            region_of[s] = len(masks)
        masks.append((~painted).astype(np.float32))
    return np.stack(masks), tuple(region_of)


def load_guides(resolve: Any, regions_ref: str | None, content_mask_ref: str | None,
                n_styles: int) -> Any:
    """The :class:`~nst_jax.guides.Guides` of a job (or None): the painted or uploaded
    mask and the content-strength map, read from their files (any size: resized)."""
    from PIL import Image

    from nst_jax.guides import Guides

    if not regions_ref and not content_mask_ref:
        return None
    regions = region_of = content = None
    if regions_ref:
        with Image.open(resolve(regions_ref)) as im:
            rgba = np.asarray(im.convert("RGBA"))
        regions, region_of = painted_regions(rgba, n_styles)
    if content_mask_ref:
        with Image.open(resolve(content_mask_ref)) as im:
            content = np.asarray(im.convert("L"), np.float32) / 255.0
    return Guides(regions=regions, region_of=region_of if regions is not None else None, content=content,
                  stretch=True)


def memory_estimate(arch: str, hw: tuple[int, int], config: Any, devices: int, points: int = 1
                    ) -> dict[str, Any]:
    """The predicted peak bytes per device of a job (:func:`nst_jax.memory.predict_bytes`)
    and what the device has free: ``{"predicted", "available", "fits", "tile"}``."""
    import jax

    from nst_jax import memory, vgg
    from nst_jax.problem import uses_photo

    deepest = max((config.content_layer, *config.style_layers), key=vgg.layer_names(arch).index)
    dev = jax.devices()[0]
    shards = devices if devices > 1 and not config.tile else 1
    need = memory.predict_bytes(arch, *hw, tile=config.tile, optimizer=config.optimizer,
                                precision=config.precision, points=-(-points // max(devices, 1)),
                                deepest=deepest, lbfgs_history=config.lbfgs_history,
                                platform=dev.platform, shards=shards, photo=uses_photo(config))
    avail = memory.available_bytes(dev)
    return {"predicted": int(need), "available": None if avail is None else int(avail),
            "fits": avail is None or need <= 0.9 * avail, "tile": config.tile, "devices": devices}


def prune_uploads(folder: Path, cap_bytes: int, keep: set[str]) -> list[str]:
    """Remove the oldest uploads (by modification time) until the folder holds at most
    ``cap_bytes``; never those in ``keep`` (inputs of queued or running jobs). The names
    removed, oldest first."""
    files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    removed = []
    for p in files:
        if total <= cap_bytes:
            break
        if p.name in keep:
            continue
        total -= p.stat().st_size
        p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


__all__ = ["PALETTE", "load_guides", "memory_estimate", "painted_regions", "prune_uploads"]
