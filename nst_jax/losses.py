"""[pure] The costs of neural style transfer.

Every function takes one example's activations ``a`` of shape ``(nH, nW, nC)``
(post-ReLU VGG features); batch with ``jax.vmap``. Normalisation constants come from
static shapes as Python floats, so they never overflow int32 at real sizes.

Conventions (``normalization=``), per layer, with ``M = nH nW``, ``N = nC``,
``F`` the ``(N, M)`` unrolled activations and ``G = F F^T`` the Gram matrix:

=============  ==========================  =====================================
preset         content                     style (relative to ``lecture``)
=============  ==========================  =====================================
lecture        ``1/(4 M N) sum (C-G)^2``   ``1/(2 M N)^2 sum (G_S-G_G)^2`` (1x)
gatys          ``1/2 sum (C-G)^2``         ``1/(4 N^2 M^2) sum`` (1x, same)
jcjohnson      ``1/(M N) sum`` (mean)      ``4/N^2`` x lecture (Gram / (N M), MSE)
tf-tutorial    ``1/(M N) sum`` (mean)      ``4`` x lecture (Gram / M, MSE)
=============  ==========================  =====================================

References:
  Gatys, Ecker & Bethge, "A Neural Algorithm of Artistic Style" (2015) and
  "Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016);
  the deeplearning.ai course's normalisation (``lecture``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

NORMALIZATIONS = ("lecture", "gatys", "jcjohnson", "tf-tutorial")

#: Factors that put the other style costs on the lecture Gram cost's scale, so the
#: default ``beta`` suits every style statistic (see README "style statistic"). At 128 px
#: with the real VGG16, the Gram cost of the bundled photos against the styles is
#: 3.9e4-8.5e4 times their raw ``hist`` cost and 5.3e4-1.1e5 times their raw ``swd`` cost
#: (the cat against the mosaic and the swirls): the geometric middles, rounded. ``mrf``:
#: chosen by eye (:mod:`nst_jax.mrf`, "Scale").
STATS_SCALE = {"meancov": 5.0, "w2": 1.2e4, "hist": 5e4, "swd": 8e4, "mrf": 7e2}


def _check_norm(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization: expected one of {NORMALIZATIONS}, got {normalization!r}"
        )


def _check_act(a: Array, name: str) -> None:
    if a.ndim != 3:
        raise ValueError(f"{name}: expected activations of shape (nH, nW, nC), got {a.shape}")


def content_cost(
    a_C: Array, a_G: Array, *, normalization: str = "lecture", mask: Array | None = None
) -> Array:
    """Content cost between the content and generated activations of one layer.

    ``J_content = 1/(4 nH nW nC) * sum((a_C - a_G)^2)`` (lecture, default);
    ``gatys``: ``1/2 * sum(...)``; ``jcjohnson``/``tf-tutorial``: the mean.
    With a content-strength map ``mask`` ``m (nH, nW)``:
    ``k * sum_{h,w,c} m[h, w] (a_C - a_G)^2`` (the same ``k``), so a map of ones is the
    plain cost and zeros free those positions from the photo.

    Args:
      a_C: content activations ``(nH, nW, nC)``.
      a_G: generated activations, same shape.
      mask: optional per-position weights ``(nH, nW)``, usually in [0, 1]
        (:func:`nst_jax.guides.layer_masks` carries a pixel map to the layer).

    Returns:
      A float32 scalar.
    """
    _check_norm(normalization)
    _check_act(a_C, "a_C")
    if a_C.shape != a_G.shape:
        raise ValueError(f"a_G: expected shape {a_C.shape} (as a_C), got {a_G.shape}")
    sq = jnp.square(a_C.astype(jnp.float32) - a_G.astype(jnp.float32))
    if mask is not None:
        _check_mask(mask, a_C, "mask")
        sq = sq * mask.astype(jnp.float32)[..., None]
    return content_scale(a_C.shape, normalization) * jnp.sum(sq)


def _check_mask(mask: Array, a: Array, name: str) -> None:
    if mask.shape != a.shape[:2]:
        raise ValueError(f"{name}: expected shape {a.shape[:2]} (the activations' nH, nW), "
                         f"got {mask.shape}")


def content_scale(shape: tuple[int, ...], normalization: str = "lecture") -> float:
    """The factor ``k`` of ``J_content = k * sum((a_C - a_G)^2)`` for activations of
    ``shape (nH, nW, nC)``: ``1/(4 nH nW nC)``, ``1/2`` or ``1/(nH nW nC)``."""
    _check_norm(normalization)
    nH, nW, nC = shape
    return {
        "lecture": 1.0 / (4.0 * nH * nW * nC),
        "gatys": 0.5,
        "jcjohnson": 1.0 / (nH * nW * nC),
        "tf-tutorial": 1.0 / (nH * nW * nC),
    }[normalization]


def _gram(A: Array) -> Array:
    """``A^T A`` for ``A (M, N)``: float32, ``Precision.HIGHEST``."""
    return lax.dot_general(
        A, A, (((0,), (0,)), ((), ())),
        precision=lax.Precision.HIGHEST, preferred_element_type=jnp.float32,
    )


@jax.custom_jvp
def _gram_sym(A: Array) -> Array:
    return _gram(A)


@_gram_sym.defjvp
def _gram_sym_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    # d(A^T A) = A^T dA + (A^T dA)^T: one product, then its transpose. Reverse mode
    # transposes this to dA = A (g + g^T), a single (M, N) x (N, N) product, where
    # autodiff of the plain product computes A g and A g^T separately (measured:
    # the Gram gradients were ~10% of a VGG16 step at 256 px on CPU, about half that after).
    (A,), (dA,) = primals, tangents
    M = lax.dot_general(A, dA, (((0,), (0,)), ((), ())),
                        precision=lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
    return _gram(A), M + M.T


def gram_matrix(a: Array) -> Array:
    """Gram matrix ``G = A A^T`` of one layer's activations.

    ``A`` is the ``(nC, nH*nW)`` unrolled activations, so ``G[c, c'] = sum_{h,w}
    a[h, w, c] a[h, w, c']``. Computed in float32 at ``Precision.HIGHEST`` (GPUs and
    TPUs otherwise default to reduced-precision matmuls), with float32 accumulation
    for bf16 inputs. Differentiable in both modes; its derivative is written as
    ``dG = sym(A dA^T)`` so that the gradient ``dA = (g + g^T) A`` costs one product.

    Args:
      a: ``(nH, nW, nC)``.

    Returns:
      ``(nC, nC)`` float32.
    """
    _check_act(a, "a")
    return _gram_sym(a.reshape(-1, a.shape[-1]))


def guided_gram_matrix(a: Array, mask: Array) -> Array:
    """The guided Gram matrix of one region: ``Gram(m * F) / sum(m)``.

    ``G_r[c, c'] = sum_{h,w} m[h,w]^2 a[h,w,c] a[h,w,c'] / sum_{h,w} m[h,w]``: the
    Gram of the features multiplied by the region's guidance channel (Gatys et al.
    2017, section 3, "guided Gram matrices"), per position of the region, so that a
    region's statistics do not depend on its area. With a binary mask it is the
    per-pixel Gram of the region's positions; a mask of ones gives exactly
    :func:`style_target`. Float32 at ``Precision.HIGHEST`` as :func:`gram_matrix`.

    Args:
      a: ``(nH, nW, nC)`` activations.
      mask: ``(nH, nW)`` region weights in [0, 1] with a positive sum (the region's
        mask carried to this layer, :func:`nst_jax.guides.layer_masks`).

    Returns:
      ``(nC, nC)`` float32.

    References:
      Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in
      Neural Style Transfer" (CVPR 2017), section 3.
    """
    _check_act(a, "a")
    _check_mask(mask, a, "mask")
    m = mask.astype(jnp.float32)
    return gram_matrix(a * m[..., None].astype(a.dtype)) / jnp.sum(m)


def style_target(a_S: Array) -> Array:
    """The per-pixel Gram matrix ``G_S / (nH nW)`` stored as a style target ``(nC, nC)``.

    Dividing by the style image's own pixel count makes the target independent of
    the style image's size, so a style image of another size (``style_scale``) or
    a blend of several styles is well defined. With equal sizes the cost is exactly
    the lecture's formula.
    """
    nH, nW, _ = a_S.shape
    return gram_matrix(a_S) / float(nH * nW)


def layer_style_cost_from_target(
    target: Array, a_G: Array, *, normalization: str = "lecture"
) -> Array:
    """Style cost of one layer against a precomputed :func:`style_target`.

    ``J = 1/(4 nC^2) * sum((T - G_G/(nH nW))^2)`` for ``lecture``/``gatys``, which is
    ``1/(2 nH nW nC)^2 * sum((Gram_S - Gram_G)^2)`` when S and G have the same size;
    ``jcjohnson`` multiplies by ``4/nC^2``, ``tf-tutorial`` by 4.

    Args:
      target: ``(nC, nC)``, see :func:`style_target`.
      a_G: generated activations ``(nH, nW, nC)``.
    """
    _check_norm(normalization)
    _check_act(a_G, "a_G")
    nC = a_G.shape[-1]
    if target.shape != (nC, nC):
        raise ValueError(f"style target: expected shape {(nC, nC)}, got {target.shape}")
    return layer_style_cost_from_gram(target, style_target(a_G), normalization=normalization)


def layer_style_cost_from_gram(
    target: Array, gram_pp: Array, *, normalization: str = "lecture"
) -> Array:
    """:func:`layer_style_cost_from_target` from G's per-pixel Gram ``Gram_G / (nH nW)``
    ``(nC, nC)`` (as the exact tiled objective accumulates it, :mod:`nst_jax.tiling`)."""
    _check_norm(normalization)
    nC = gram_pp.shape[-1]
    diff = target - gram_pp
    scale = 1.0 / (4.0 * nC * nC)
    scale *= {"lecture": 1.0, "gatys": 1.0, "jcjohnson": 4.0 / (nC * nC), "tf-tutorial": 4.0}[
        normalization
    ]
    return scale * jnp.sum(jnp.square(diff))


def layer_style_cost(a_S: Array, a_G: Array, *, normalization: str = "lecture") -> Array:
    """Style cost of one layer: ``1/(2 nH nW nC)^2 * sum((Gram_S - Gram_G)^2)``.

    Args:
      a_S: style activations ``(nH, nW, nC)``.
      a_G: generated activations ``(nH', nW', nC)`` (same size in the classic setting;
        otherwise each Gram is divided by its own pixel count, see :func:`style_target`).

    Returns:
      A float32 scalar.
    """
    _check_act(a_S, "a_S")
    return layer_style_cost_from_target(style_target(a_S), a_G, normalization=normalization)


def style_cost(
    style_feats: Mapping[str, Array],
    gen_feats: Mapping[str, Array],
    layer_weights: Mapping[str, float | Array],
    *,
    normalization: str = "lecture",
    masks: Mapping[str, Array] | None = None,
    style_masks: Mapping[str, Array] | None = None,
) -> Array:
    """``J_style = sum_l lambda_l * J_style^[l](S, G)`` over the layers of ``layer_weights``.

    With ``masks`` (the region of G the style applies to) and/or ``style_masks`` (the
    region of S to learn from), each side's Gram is the :func:`guided_gram_matrix` of
    its region: ``J^[l] = 1/(4 nC^2) sum (Gram(m_S F_S)/sum m_S - Gram(m_G F_G)/sum m_G)^2``
    (lecture). All-ones masks give exactly the unmasked cost.

    Args:
      style_feats: ``{layer: (nH, nW, nC)}`` activations of S.
      gen_feats: ``{layer: (nH, nW, nC)}`` activations of G.
      layer_weights: ``{layer: lambda_l}`` (may be traced).
      masks: optional ``{layer: (nH, nW)}`` weights on G's positions.
      style_masks: optional ``{layer: (nH', nW')}`` weights on S's positions.
    """
    missing = [k for k in layer_weights if k not in style_feats]
    if missing:
        raise ValueError(f"style layers {missing} missing from style_feats")
    targets = {k: style_target(style_feats[k]) if style_masks is None
               else guided_gram_matrix(style_feats[k], style_masks[k]) for k in layer_weights}
    if masks is None:
        return style_cost_from_targets(targets, gen_feats, layer_weights,
                                       normalization=normalization)
    return style_cost_from_targets(
        {k: t[None] for k, t in targets.items()}, gen_feats, layer_weights,
        normalization=normalization, masks={k: masks[k][None] for k in layer_weights})


def style_cost_from_targets(
    targets: Mapping[str, Any],
    gen_feats: Mapping[str, Array],
    layer_weights: Mapping[str, float | Array],
    *,
    normalization: str = "lecture",
    style_loss: str = "gram",
    masks: Mapping[str, Array] | None = None,
) -> Array:
    """:func:`style_cost` against precomputed targets: :func:`style_target` Grams, or
    for ``style_loss`` ``meancov``/``w2`` the moments of
    :func:`nst_jax.statistics.stats_target` (whose cost is scaled by
    :data:`STATS_SCALE` to the Gram cost's magnitude; ``normalization`` applies to the
    Gram only).

    Regions (Gatys et al. 2017, section 3): with ``masks`` ``{layer: (R, nH, nW)}``, one
    weight map per region of G, every target has a leading axis of ``R`` regions
    (``(R, nC, nC)`` Grams; ``mu (R, nC)``... for the statistics) and

        ``J_style = sum_r sum_l lambda_l J_l(T_{r,l}, G's statistics in region r)``

    with G's statistics the :func:`guided_gram_matrix` (or the weighted moments of
    :func:`nst_jax.statistics.feature_stats`) of ``masks[l][r]``. Each region's cost is
    per position of the region, so the sum does not favour large regions, and two
    disjoint regions cost the sum of the two single-region costs.
    """
    from nst_jax import statistics

    missing = [k for k in layer_weights if k not in targets or k not in gen_feats]
    if missing:
        raise ValueError(f"style layers {missing} missing from the targets or the features")
    if style_loss not in statistics.STYLE_LOSSES:
        raise ValueError(f"style_loss: expected one of {statistics.STYLE_LOSSES}, got {style_loss!r}")
    for k in layer_weights:
        _check_act(gen_feats[k], f"gen_feats[{k!r}]")
        nC = gen_feats[k].shape[-1]
        lead = () if masks is None else masks[k].shape[:1]
        if style_loss == "gram" and targets[k].shape != (*lead, nC, nC):
            raise ValueError(f"style target {k}: expected shape {(*lead, nC, nC)}, "
                             f"got {targets[k].shape}")
        if masks is not None and masks[k].shape[1:] != gen_feats[k].shape[:2]:
            h, w = gen_feats[k].shape[:2]
            raise ValueError(f"masks[{k!r}]: expected shape (R, {h}, {w}), got {masks[k].shape}")
    if masks is None:
        moments = {k: layer_moments(gen_feats[k], style_loss) for k in layer_weights}
        return style_cost_from_moments(targets, moments, layer_weights,
                                       normalization=normalization, style_loss=style_loss)

    def one_region(t: Mapping[str, Any], m: Mapping[str, Array]) -> Array:
        moments = {k: layer_moments(gen_feats[k], style_loss, m[k]) for k in layer_weights}
        return style_cost_from_moments(t, moments, layer_weights,
                                       normalization=normalization, style_loss=style_loss)

    t = {k: targets[k] for k in layer_weights}
    m = {k: masks[k] for k in layer_weights}
    return jnp.sum(jax.vmap(one_region)(t, m))


def layer_moments(a: Array, style_loss: str = "gram", mask: Array | None = None) -> dict[str, Array]:
    """What the style cost needs of one layer of G: ``{"gram": Gram / (nH nW)}``, or
    for ``meancov``/``w2`` ``{"mu", "cov"}`` (:func:`nst_jax.statistics.feature_stats`);
    of the region ``mask (nH, nW)`` when given (:func:`guided_gram_matrix`, weighted moments)."""
    from nst_jax import statistics

    if style_loss == "gram":
        return {"gram": style_target(a) if mask is None else guided_gram_matrix(a, mask)}
    if style_loss in statistics.WHOLE_IMAGE_LOSSES:
        if mask is not None:
            raise ValueError(f"style_loss {style_loss!r}: regions are not offered (it matches the "
                             "whole image's features); use gram, meancov or w2 with regions")
        return {"feats": a}
    mu, cov = statistics.feature_stats(a, mask)
    return {"mu": mu, "cov": cov}


def style_cost_from_moments(
    targets: Mapping[str, Any],
    moments: Mapping[str, Mapping[str, Array]],
    layer_weights: Mapping[str, float | Array],
    *,
    normalization: str = "lecture",
    style_loss: str = "gram",
) -> Array:
    """``J_style = sum_l lambda_l J_l`` from G's per-layer moments (:func:`layer_moments`),
    however they were computed: from whole feature maps, or summed tile by tile
    (:mod:`nst_jax.tiling`)."""
    from nst_jax import statistics

    total = jnp.zeros((), jnp.float32)
    for k, w in layer_weights.items():
        m = moments[k]
        if style_loss == "gram":
            layer = layer_style_cost_from_gram(targets[k], m["gram"], normalization=normalization)
        elif style_loss == "meancov":
            layer = STATS_SCALE["meancov"] * statistics.meancov_from_moments(targets[k], m["mu"], m["cov"])
        elif style_loss in statistics.WHOLE_IMAGE_LOSSES:  # hist, swd, mrf
            from nst_jax import style_sets

            layer = STATS_SCALE[style_loss] * style_sets.layer_cost(style_loss, targets[k], m["feats"])
        else:
            layer = STATS_SCALE["w2"] * statistics.w2_from_moments(targets[k], m["mu"], m["cov"])
        total = total + w * layer
    return total


def total_variation(image: Array, padding: str = "zero") -> Array:
    """Squared total variation, per pixel: ``1/(H W C) * (sum dy^2 + sum dx^2)``.

    ``dy = x[i+1, j] - x[i, j]`` and ``dx = x[i, j+1] - x[i, j]`` on an ``(H, W, C)``
    image (RGB in [0, 1] in this package). Zero on a constant image; a smoothness
    regulariser that is not in Gatys et al. (weight 0 by default). With ``padding``
    ``"circular"`` the differences wrap around (``x[0] - x[H-1]`` too), as the network
    sees a circularly padded image; ``zero`` and ``reflect`` add no border differences.
    """
    if image.ndim != 3:
        raise ValueError(f"image: expected shape (H, W, C), got {image.shape}")
    x = image.astype(jnp.float32)
    if padding == "circular":
        dy = jnp.sum(jnp.square(jnp.roll(x, -1, axis=0) - x))
        dx = jnp.sum(jnp.square(jnp.roll(x, -1, axis=1) - x))
        return (dy + dx) / float(image.size)
    dy = jnp.sum(jnp.square(x[1:] - x[:-1]))
    dx = jnp.sum(jnp.square(x[:, 1:] - x[:, :-1]))
    return (dy + dx) / float(image.size)


def total_cost(
    content_target: Array,
    style_targets: Mapping[str, Array],
    gen_content: Array,
    gen_style: Mapping[str, Array],
    image: Array,
    *,
    alpha: float | Array,
    beta: float | Array,
    layer_weights: Mapping[str, float | Array],
    tv_weight: float | Array = 0.0,
    normalization: str = "lecture",
    style_loss: str = "gram",
    masks: Mapping[str, Array] | None = None,
    content_mask: Array | None = None,
    padding: str = "zero",
) -> tuple[Array, dict[str, Array]]:
    """``J(G) = alpha * J_content(C, G) + beta * J_style(S, G) + tv_weight * TV(G)``.

    Args:
      content_target: ``a_C`` at the content layer ``(nH, nW, nC)``.
      style_targets: ``{layer: style_target(a_S)}``, ``(nC, nC)`` each.
      gen_content: ``a_G`` at the content layer.
      gen_style: ``{layer: a_G}`` at the style layers.
      image: G as RGB ``(H, W, 3)`` (for the TV term).
      alpha, beta, tv_weight, layer_weights: scalars (may be traced, e.g. under vmap).
      masks: regions ``{layer: (R, nH, nW)}`` of :func:`style_cost_from_targets` (the
        targets then have a leading axis of regions).
      content_mask: a content-strength map ``(nH, nW)`` at the content layer
        (:func:`content_cost`).
      padding: the network's padding, for the TV term (:func:`total_variation`).

    Returns:
      ``(J, {"total", "content", "style", "tv"})`` where ``content``/``style``/``tv`` are
      the unweighted terms.
    """
    jc = content_cost(content_target, gen_content, normalization=normalization, mask=content_mask)
    js = style_cost_from_targets(style_targets, gen_style, layer_weights,
                                 normalization=normalization, style_loss=style_loss, masks=masks)
    tv = total_variation(image, padding)
    j = alpha * jc + beta * js + tv_weight * tv
    return j, {"total": j, "content": jc, "style": js, "tv": tv}
