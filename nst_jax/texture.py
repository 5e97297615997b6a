"""[pure] How seamless a texture is: tile it and compare the gradients across the seams
with those inside (issue 26's seam score).

``seam_score(t) = mean |grad| across the tile borders of t tiled 2x2 / mean |grad| inside``,
where ``|grad|`` is the absolute difference of horizontally (vertically) adjacent pixels,
averaged over channels. Across a border means the pixel pairs that straddle it: the
last column of one copy and the first of the next (the wrap-around pair of ``t`` itself).
A texture that tiles seamlessly scores about 1 (its seams are like any other column);
one with visible seams scores well above 1.
"""

from __future__ import annotations

import numpy as np


def tile(t: np.ndarray, ny: int = 2, nx: int = 2) -> np.ndarray:
    """``t (H, W, C)`` repeated ``ny x nx`` times: ``(ny H, nx W, C)``."""
    return np.tile(np.asarray(t), (ny, nx, 1))


def seam_score(t: np.ndarray) -> float:
    """The seam score of ``t (H, W, C)`` (see the module docstring); needs ``H, W >= 3``."""
    t = np.asarray(t, np.float64)
    h, w = t.shape[:2]
    if t.ndim != 3 or h < 3 or w < 3:
        raise ValueError(f"texture: expected an (H, W, C) image of at least 3x3, got {t.shape}")
    big = tile(t)
    dx = np.abs(np.diff(big, axis=1)).mean(-1)   # (2H, 2W-1): pair (j, j+1)
    dy = np.abs(np.diff(big, axis=0)).mean(-1)   # (2H-1, 2W)
    across = np.concatenate([dx[:, w - 1], dy[h - 1, :]])
    inside = np.concatenate([np.delete(dx, w - 1, axis=1).ravel(), np.delete(dy, h - 1, axis=0).ravel()])
    return float(across.mean() / max(inside.mean(), 1e-12))


__all__ = ["seam_score", "tile"]
