"""[pure] Where the tiles of :mod:`nst_jax.tiling` lie: windows, halos, and the cells each owns.

Geometry only (no arrays but the index lookups of :class:`TilePlan`): each side gets
``n = ceil(side / tile)`` windows of one size, inside the image rounded up to the
deepest pooling stride ``2^P`` and on that stride (so every window sees the image's
own pooling grid): the first starts at the image's edge, the last ends at its far
edge, the others spread evenly between. The ``halo`` is the number of pixels by which
a window's fake edge corrupts the deepest layer used (3x3 convolutions widen it by
one cell, ``2^p`` pixels at level ``p``; pooling rounds it up to a whole cell). Tile
``k`` owns the cells from one halo past its window's start to one halo past the next
window's start (the first from the image's edge, the last to its end): unequal
shares, each exact, and no halo spent on an image border, where the window's edge is
the image's own. See :mod:`nst_jax.tiling` for why that is exact.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from nst_jax import vgg

Array = jax.Array


def receptive_halo(arch: str, layers: Sequence[str]) -> tuple[int, int]:
    """``(halo, align)`` in pixels for the deepest of ``layers``: how far a window's fake
    edge corrupts that layer, and its pooling stride ``2^P`` (the halo is a multiple)."""
    order = vgg.layer_names(arch)
    deepest = max(order.index(vgg.canonical_layer(x, arch)) for x in layers)
    wrong, pools = 0, 0
    for i, name in enumerate(order[: deepest + 1]):
        if i > 0 and name.endswith("_1"):
            pools += 1
            cell = 2 ** pools
            wrong = -(-wrong // cell) * cell
        wrong += 2 ** pools
    align = 2 ** pools
    return -(-wrong // align) * align, align


def _starts(side: int, n: int, win: int, align: int) -> tuple[int, ...]:
    """``n`` window starts spread evenly over ``[0, side - win]``, multiples of ``align``."""
    if n == 1:
        return (0,)
    last = side - win
    return (*(k * last // (n - 1) // align * align for k in range(n - 1)), last)


def _axis(side: int, tile: int, halo: int, align: int) -> tuple[int, tuple[int, ...]]:
    """``(window, starts)`` along one side of ``side`` pixels, tiles of at most ``tile``.

    ``n = ceil(side / tile)`` windows of one size ``win`` lie inside the image rounded
    up to ``align`` (``side_a``); the first starts at 0, the last ends at ``side_a``.
    Tile ``k`` owns ``[starts[k] + halo, starts[k+1] + halo)`` (the first from 0, the
    last to ``side_a``): it is exact there when neighbouring starts are at most
    ``win - 2 halo`` apart, so ``win`` is the smallest multiple of ``align`` with
    ``n win - 2 (n - 1) halo >= side_a`` for which the rounded starts keep that gap.
    A window's edge on the image border needs no halo (the image's own zero padding).
    """
    side_a = -(-side // align) * align
    n = -(-side // tile)
    if n == 1:
        return side_a, (0,)
    win = -(-(side_a + 2 * (n - 1) * halo) // n // align) * align
    while win < side_a:
        starts = _starts(side_a, n, win, align)
        if all(b - a <= win - 2 * halo for a, b in itertools.pairwise(starts)):
            return win, starts
        win += align
    return side_a, (0,)  # one window of the whole side is no larger


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """How an ``height x width`` image is cut: ``rows x cols`` windows of ``window``
    pixels at ``row_starts x col_starts``, inside the image rounded up to ``align``
    (the ``canvas``). Tiles own unequal shares (see :func:`_axis`): the first and last
    along each side own their window less one halo, the others less two."""

    height: int
    width: int
    halo: int
    align: int
    win_h: int
    win_w: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @property
    def rows(self) -> int:
        return len(self.row_starts)

    @property
    def cols(self) -> int:
        return len(self.col_starts)

    @property
    def n_tiles(self) -> int:
        return self.rows * self.cols

    @property
    def window(self) -> tuple[int, int]:
        return self.win_h, self.win_w

    @property
    def canvas(self) -> tuple[int, int]:
        """The padded input: the image rounded up to ``align`` (where the last windows end)."""
        return self.row_starts[-1] + self.win_h, self.col_starts[-1] + self.win_w

    def origin(self, i: Array) -> tuple[Array, Array]:
        """Top-left pixel of tile ``i``'s window (row-major) in the image."""
        return (jnp.asarray(self.row_starts)[i // self.cols], jnp.asarray(self.col_starts)[i % self.cols])

    def owns(self, i: Array) -> tuple[Array, Array, Array, Array]:
        """``(row0, row1, col0, col1)``: the pixels tile ``i`` owns, ``[row0, row1) x [col0, col1)``."""
        def bounds(starts: tuple[int, ...], end: int, k: Array) -> tuple[Array, Array]:
            lo = jnp.asarray((0, *(s + self.halo for s in starts[1:]), end))
            return lo[k], lo[k + 1]

        r0, r1 = bounds(self.row_starts, self.canvas[0], i // self.cols)
        c0, c1 = bounds(self.col_starts, self.canvas[1], i % self.cols)
        return r0, r1, c0, c1


def plan_tiles(shape: Sequence[int], tile: int, arch: str, layers: Sequence[str]) -> TilePlan:
    """The tiling of an image of ``shape (H, W, ...)`` with tiles of at most ``tile`` px.

    Each side gets ``n = ceil(side / tile)`` windows of the smallest size that covers
    it with exact tiles (:func:`_axis`), at most ``tile + 2 halo`` (a 1024 px side with
    ``tile=512`` and VGG19's 80 px halo: two 592 px windows; with ``tile=1024``, one
    window and no halo at all). Windows stay inside the image: no compute is spent on
    halos past its border.

    Raises:
      ValueError: when ``tile`` is smaller than the halo (or the stride), naming both.
    """
    halo, align = receptive_halo(arch, layers)
    need = max(halo, align)
    if tile < need:
        deepest = vgg.layer_names(arch)[max(vgg.layer_names(arch).index(vgg.canonical_layer(x, arch))
                                            for x in layers)]
        raise ValueError(
            f"tile: {tile} px is smaller than the {halo} px halo that {deepest} needs "
            f"(the reach of its receptive field); use --tile {need} or more")
    t = tile // align * align
    h, w = int(shape[0]), int(shape[1])
    win_h, rs = _axis(h, t, halo, align)
    win_w, cs = _axis(w, t, halo, align)
    return TilePlan(h, w, halo, align, win_h, win_w, rs, cs)


__all__ = ["TilePlan", "plan_tiles", "receptive_halo"]
