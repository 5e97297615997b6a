"""Matching regions of a content and a style image without a segmentation tool:
k-means on VGG features and colour, run on both images at once, so that cluster ``r``
of the content and cluster ``r`` of the style are the same kind of thing (sky with
sky, foliage with foliage). The masks feed the guided Grams of :mod:`nst_jax.guides`
(Luan et al. 2017's segmentation-augmented style loss, with k-means in place of a
hand-made or network segmentation).

Each position of the ``feature_layer`` grid (``conv3_1``: 1/4 of the image) gets a
vector ``[f / |f|, colour_weight * lab]``: the unit-normalised features (their
direction says *what* is there, their norm mostly *how textured*) and the mean colour
of its 4x4 pixel cell in CIE Lab scaled to about the same range. Lloyd's algorithm with
k-means++ seeding runs in NumPy (a few thousand vectors: no accelerator needed) from a
fixed seed, so the same inputs give the same regions.

A cluster with less than ``min_share`` of the content's positions is merged into the
nearest remaining one (too small for deep layers' statistics). A region fails when the
style holds (almost) none of it: a content region with less than ``min_share`` of the
style's positions has no partner, and takes the whole style
image's statistics instead (:class:`Pairing` says which). Style-only clusters are
dropped (nothing in G to paint).

References:
  Luan, Paris, Shechtman & Bala, "Deep Photo Style Transfer" (CVPR 2017), section 3.2.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

#: A style cluster with less than this share of the style's positions is no partner.
MIN_SHARE = 0.02
#: The layer whose features are clustered (1/4 resolution in VGG16/19).
FEATURE_LAYER = "conv3_1"
#: Feature positions per region at least (a 4x4 block of ``conv3_1``: one ``conv5_1`` cell).
POSITIONS_PER_REGION = 16
#: Weight of the standardised Lab colour (a unit vector on average) beside the unit feature vector.
COLOUR_WEIGHT = 1.0


@dataclasses.dataclass(frozen=True)
class Pairing:
    """What :func:`auto_regions` found.

    Attributes:
      content: ``(K', H, W)`` float32 {0, 1} masks of the content's regions (a partition).
      style: per content region, the ``(h, w)`` mask of its partner region in the style,
        or ``None`` where clustering found no partner (whole-image style there).
      shares: ``(K', 2)``: each region's share of the content's and the style's pixels.
      labels: the cluster index each region came from (``K'`` of the ``K`` asked for).
    """

    content: np.ndarray
    style: tuple[Any, ...]
    shares: np.ndarray
    labels: tuple[int, ...]

    @property
    def failed(self) -> list[int]:
        """The regions without a partner in the style."""
        return [r for r, m in enumerate(self.style) if m is None]


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB ``(..., 3)`` in [0, 1]; float64."""
    c = np.asarray(rgb, np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def cell_means(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Mean of ``img (H, W, C)`` over each cell of an ``hw`` grid of ``(H // h) x (W // w)``
    pixel cells (the feature grid's receptive cells; rows/columns past them dropped)."""
    h, w = hw
    fy, fx = img.shape[0] // h, img.shape[1] // w
    return img[: h * fy, : w * fx].reshape(h, fy, w, fx, -1).mean(axis=(1, 3))


def describe(feats: np.ndarray, rgb: np.ndarray, colour_weight: float = COLOUR_WEIGHT) -> np.ndarray:
    """The vectors clustered: ``(h * w, C + 3)`` from features ``(h, w, C)`` and the image
    ``(H, W, 3)`` in [0, 1]. Each image is centred on its own mean (features) and
    standardised (Lab colour): what differs between the two photos as a whole (the
    light, the season, the palette: what the transfer is meant to change) would
    otherwise split the clusters by image rather than by content."""
    f = np.asarray(feats, np.float64).reshape(-1, feats.shape[-1])
    f = f - f.mean(axis=0)
    f = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-8)
    lab = cell_means(srgb_to_lab(rgb), feats.shape[:2]).reshape(-1, 3)
    lab = (lab - lab.mean(axis=0)) / np.maximum(lab.std(axis=0), 1e-3)
    return np.concatenate([f, colour_weight * lab / np.sqrt(3.0)], axis=-1)


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii 2007).

    Args:
      x: ``(n, d)`` vectors, ``n >= k``.

    Returns:
      ``(centres (k, d), labels (n,))``; an emptied cluster is re-seeded at the point
      farthest from its centre.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k: expected 1 <= k <= {n} (the number of vectors), got {k}")
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        centres.append(x[rng.choice(n, p=p)])
        d2 = np.minimum(d2, np.sum((x - centres[-1]) ** 2, axis=1))
    c = np.stack(centres)
    labels = np.full(n, -1)
    for _ in range(iters):
        dist = (x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None]
        new = np.argmin(dist, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = members.mean(axis=0)
            else:
                far = int(np.argmax(dist[np.arange(n), labels]))
                c[j], labels[far] = x[far], j
    return c, labels


def max_regions(hw: tuple[int, int]) -> int:
    """The most regions a feature grid ``hw`` supports: :data:`POSITIONS_PER_REGION` each."""
    return hw[0] * hw[1] // POSITIONS_PER_REGION


def _upsample(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A label grid ``(h, w)`` to pixels ``hw`` by nearest neighbour (cell centres)."""
    ys = np.minimum((np.arange(hw[0]) + 0.5) * labels.shape[0] / hw[0], labels.shape[0] - 1).astype(int)
    xs = np.minimum((np.arange(hw[1]) + 0.5) * labels.shape[1] / hw[1], labels.shape[1] - 1).astype(int)
    return labels[ys[:, None], xs[None, :]]


def auto_regions(content_feats: np.ndarray, style_feats: np.ndarray, content: np.ndarray,
                 style: np.ndarray, k: int, *, seed: int = 0, min_share: float = MIN_SHARE,
                 colour_weight: float = COLOUR_WEIGHT) -> Pairing:
    """``k`` regions clustered jointly over the content and the style.

    Args:
      content_feats, style_feats: ``(h, w, C)`` features of the two images at one layer.
      content, style: the images ``(H, W, 3)``, ``(H', W', 3)`` in [0, 1].
      k: clusters asked for, at most :func:`max_regions` of the content's grid.

    Returns:
      A :class:`Pairing` of the clusters present in the content, in order of size.
    """
    xc = describe(content_feats, content, colour_weight)
    xs = describe(style_feats, style, colour_weight)
    most = max_regions(content_feats.shape[:2])
    if k > most:
        h, w = content_feats.shape[:2]
        raise ValueError(f"k: {k} regions, but the content supports at most {most} ({h}x{w} positions "
                         f"at {FEATURE_LAYER}, {POSITIONS_PER_REGION} per region); ask for fewer "
                         "regions or a larger image")
    x = np.concatenate([xc, xs])
    centres, labels = kmeans(x, k, seed=seed)
    while True:  # a content cluster too small to hold a position at deep layers joins its neighbour
        share = np.bincount(labels[: len(xc)], minlength=len(centres)) / len(xc)
        small = [j for j in range(len(centres)) if 0 < share[j] < min_share]
        if not small or len(centres) == 1:
            break
        centres = np.delete(centres, min(small, key=lambda j: share[j]), axis=0)
        labels = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    lc = labels[: len(xc)].reshape(content_feats.shape[:2])
    ls = labels[len(xc):].reshape(style_feats.shape[:2])
    pc, ps = _upsample(lc, content.shape[:2]), _upsample(ls, style.shape[:2])
    present = sorted({int(v) for v in np.unique(lc)}, key=lambda j: -np.mean(pc == j))
    masks, partners, shares = [], [], []
    for j in present:
        sc, ss = float(np.mean(pc == j)), float(np.mean(ps == j))
        masks.append((pc == j).astype(np.float32))
        partners.append((ps == j).astype(np.float32) if ss >= min_share else None)
        shares.append((sc, ss))
    return Pairing(np.stack(masks), tuple(partners), np.asarray(shares), tuple(present))


__all__ = ["COLOUR_WEIGHT", "FEATURE_LAYER", "MIN_SHARE", "POSITIONS_PER_REGION", "Pairing", "auto_regions",
           "cell_means", "describe", "kmeans", "max_regions", "srgb_to_lab"]
