"""[pure] The optimisation problem: what the network sees, the targets, and ``J(G)``.

The optimised variable X is G in RGB pixel space, ``(H, W, 3)`` in [0, 1] (or, with
``preserve_color="luminance"``, its luminance ``(H, W, 1)``); preprocessing to the
network's input happens inside the cost, so learning rates are in pixel units and the
box constraint is simple.

A custom objective (for :func:`nst_jax.step.make_step` and the drivers) has the
signature of :func:`objective`: ``(X, params, targets, config, spec) -> (J, terms)``
with ``terms`` a dict of scalars that holds at least ``total``, ``content``,
``style`` and ``tv``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import color, losses, statistics, vgg
from nst_jax import guides as guide_masks
from nst_jax.config import Config
from nst_jax.guides import Guides

Array = jax.Array
Targets = dict[str, Any]


def init_image(content_rgb: Array, config: Config, *, key: Array) -> Array:
    """The starting G, ``(H, W, 3)`` in [0, 1].

    ``noise``: ``U(0, 1)`` white noise (the lecture's start); ``content``: C;
    ``content+noise``: ``(1 - r) C + r U(0, 1)`` with ``r = noise_ratio``.
    """
    noise = jax.random.uniform(key, content_rgb.shape, jnp.float32)
    if config.init == "noise":
        return noise
    if config.init == "content":
        return jnp.asarray(content_rgb, jnp.float32)
    if config.init == "content+noise":
        r = config.noise_ratio
        return (1.0 - r) * jnp.asarray(content_rgb, jnp.float32) + r * noise
    raise ValueError(f"init: expected noise, content or content+noise, got {config.init!r}")


def compute_targets(
    params: vgg.Params,
    spec: vgg.Preprocessing,
    content_rgb: Array,
    style_rgbs: Array | Sequence[Array],
    config: Config,
    style_blend: Sequence[float] | None = None,
    guides: Guides | None = None,
) -> Targets:
    """Content activations of C and style Grams of S, computed once.

    With several style images the targets are the blend ``sum_k w_k T_k`` of their
    per-pixel Grams (:func:`losses.style_target`), weights normalised to sum to 1,
    as jcjohnson/neural-style blends Gram targets. The images are the network's view
    (see :func:`network_inputs` for the colour modes).

    With ``guides`` (:class:`nst_jax.guides.Guides`): each style's target is the
    :func:`losses.guided_gram_matrix` of its own region (its style mask), styles are
    blended within their region of G (weights renormalised per region), and the
    targets carry the masks at each layer (checked here, eagerly).

    Returns:
      ``{"content": (nH, nW, nC), "style": {layer: (nC, nC)}}``; with regions the style
      targets have a leading axis of regions and ``"masks": {layer: (R, nH, nW)}`` is
      added; with a content mask, ``"content_mask": (nH, nW)``.
    """
    styles = [style_rgbs] if hasattr(style_rgbs, "ndim") else list(style_rgbs)
    w = np.ones(len(styles)) if style_blend is None else np.asarray(style_blend, np.float64)
    if w.shape != (len(styles),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(
            f"style_blend: expected {len(styles)} non-negative weights with a positive sum, "
            f"got {list(np.atleast_1d(w))}"
        )
    if guides is not None:
        if config.style_loss in statistics.WHOLE_IMAGE_LOSSES:
            raise ValueError(f"style_loss {config.style_loss!r}: regions and masks are not offered "
                             "(it matches the whole image's features); use gram, meancov or w2 "
                             "with them")
        g = guide_masks.at_layers(guides, tuple(content_rgb.shape[:2]),
                                  [tuple(s.shape[:2]) for s in styles], config)
        of = np.asarray(g["region_of"])
        per_region = np.array([w[of == r].sum() for r in range(of.max() + 1)])
        if np.any(per_region <= 0):
            raise ValueError(f"style_blend: a region's styles all have weight 0: {list(w)}")
        g["w"] = jnp.asarray(w / per_region[of], jnp.float32)
        of_k = g.pop("region_of")
        return _guided_targets(params, jnp.asarray(content_rgb, jnp.float32),
                               [jnp.asarray(s, jnp.float32) for s in styles], g, of_k, config, spec)
    from nst_jax import style_sets

    style_sets.check(tuple(content_rgb.shape[:2]), [tuple(s.shape[:2]) for s in styles], w, config)
    w = jnp.asarray(w / w.sum(), jnp.float32)
    return _targets(params, jnp.asarray(content_rgb, jnp.float32),
                    [jnp.asarray(s, jnp.float32) for s in styles], w, config, spec)


@functools.partial(jax.jit, static_argnums=(5,))
def _targets(params, content, styles, w, config, spec) -> Targets:
    with precision_scope(config):
        return _targets_body(params, content, styles, w, config, spec)


def _targets_body(params, content, styles, w, config, spec) -> Targets:
    """Gram targets, or for ``meancov``/``w2`` the moments ``mu``, ``cov``: several
    styles are blended moment by moment (``sum_k w_k mu_k``, ``sum_k w_k C_k``), then
    ``w2``'s square root is taken of the blended covariance."""
    if config.tile:
        return _tiled_targets(params, content, styles, w, config, spec)
    feats = vgg_features_rgb(params, spec, content, [config.content_layer], config.pooling,
                             padding=config.padding)
    if config.style_loss in ("swd", "mrf"):
        from nst_jax import style_sets

        return {"content": feats[config.content_layer], **style_sets.style_targets(
            lambda s: vgg_features_rgb(params, spec, s, config.style_layers, config.pooling,
                                       padding=config.padding), styles, w, config)}
    gram = config.style_loss == "gram"
    style_t: dict[str, Any] = {layer: 0.0 if gram else {"q": 0.0} if config.style_loss == "hist"
                               else {"mu": 0.0, "cov": 0.0} for layer in config.style_layers}
    for k, s in enumerate(styles):
        sf = vgg_features_rgb(params, spec, s, config.style_layers, config.pooling, padding=config.padding)
        for layer in config.style_layers:
            if gram:
                style_t[layer] = style_t[layer] + w[k] * losses.style_target(sf[layer])
            elif config.style_loss == "hist":  # blended quantile functions: the 1D W2 barycentre
                q = statistics.stats_target(sf[layer], "hist")["q"]
                style_t[layer] = {"q": style_t[layer]["q"] + w[k] * q}
            else:
                mu, cov = statistics.feature_stats(sf[layer])
                t = style_t[layer]
                style_t[layer] = {"mu": t["mu"] + w[k] * mu, "cov": t["cov"] + w[k] * cov}
    if not gram:
        style_t = {k: statistics.finish_target(t, config.style_loss) for k, t in style_t.items()}
    return {"content": feats[config.content_layer], "style": style_t}


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _guided_targets(params, content, styles, g, of, config, spec) -> Targets:
    with precision_scope(config):
        return _guided_targets_body(params, content, styles, g, of, config, spec)


def _guided_targets_body(params, content, styles, g, of, config, spec) -> Targets:
    """:func:`_targets_body` with the masks of :func:`guides.at_layers` ``g``: each
    style's statistics of its own region, blended per region ``of[k]`` of G."""
    if config.tile:
        return _tiled_targets(params, content, styles, g["w"], config, spec, g, of)
    feats = vgg_features_rgb(params, spec, content, [config.content_layer], config.pooling,
                             padding=config.padding)
    gram = config.style_loss == "gram"
    n_regions = max(of) + 1
    acc: list[dict[str, Any]] = [
        {layer: 0.0 if gram else {"mu": 0.0, "cov": 0.0} for layer in config.style_layers}
        for _ in range(n_regions)]
    for k, s in enumerate(styles):
        sf = vgg_features_rgb(params, spec, s, config.style_layers, config.pooling, padding=config.padding)
        sm = g["style_masks"][k]
        for layer in config.style_layers:
            m = losses.layer_moments(sf[layer], config.style_loss, None if sm is None else sm[layer])
            t = acc[of[k]][layer]
            acc[of[k]][layer] = (t + g["w"][k] * m["gram"] if gram else
                                 {"mu": t["mu"] + g["w"][k] * m["mu"],
                                  "cov": t["cov"] + g["w"][k] * m["cov"]})
    if not gram:
        acc = [{k: statistics.finish_target(t, config.style_loss) for k, t in a.items()} for a in acc]
    out: Targets = {"content": feats[config.content_layer]}
    if g["masks"] is None:
        out["style"] = acc[0]
    else:
        out["style"] = jax.tree.map(lambda *r: jnp.stack(r), *acc)
        out["masks"] = g["masks"]
    if g["content"] is not None:
        out["content_mask"] = g["content"]
    return out


@functools.partial(jax.jit, static_argnums=(1,))
def content_target(params: vgg.Params, spec: vgg.Preprocessing, content_rgb: Array, config: Config) -> Array:
    """The content target alone: C's activations at ``config.content_layer`` (give the
    network's view of C, :func:`network_inputs`); what a batch of photos needs per photo."""
    with precision_scope(config):
        feats = vgg_features_rgb(params, spec, content_rgb, [config.content_layer], config.pooling,
                             padding=config.padding)
    return feats[config.content_layer]


def _tiled_targets(params, content, styles, w, config, spec, g=None, of=None) -> Targets:
    """:func:`_targets_body` (or with guides ``g`` :func:`_guided_targets_body`) one tile
    at a time (``config.tile``): the same style targets (each style's own region, as a
    masked sum, tiled exactly), and the content target as :func:`tiling.layer_map` lays
    it out; the masks are kept whole (the tiled objective lays them on its canvas)."""
    from nst_jax import tiling

    arch = vgg.arch_of(params)
    pc = tiling.problem_for(content.shape, config, arch, dtype="float32")
    x = tiling.pad_canvas(vgg.preprocess(content, spec), pc.plan)
    out: Targets = {"content": tiling.layer_map(pc, x, params, config.content_layer)}
    of = of or (0,) * len(styles)
    gram = config.style_loss == "gram"
    acc: list[dict[str, Any]] = [
        {layer: 0.0 if gram else {"mu": 0.0, "cov": 0.0} for layer in config.style_layers}
        for _ in range(max(of) + 1)]
    for k, s in enumerate(styles):
        ps = tiling.problem_for(s.shape, config, arch, dtype="float32")
        sm = None if g is None else g["style_masks"][k]
        m = tiling.style_moments(ps, tiling.pad_canvas(vgg.preprocess(s, spec), ps.plan), params, sm)
        for layer in config.style_layers:
            acc[of[k]][layer] = jax.tree.map(lambda t, v, wk=w[k]: t + wk * v, acc[of[k]][layer],
                                             m[layer]["gram"] if gram else m[layer])
    if not gram:
        acc = [{k: statistics.finish_target(t, config.style_loss) for k, t in a.items()} for a in acc]
    if g is None or g["masks"] is None:
        out["style"] = acc[0]
    else:
        out["style"] = jax.tree.map(lambda *r: jnp.stack(r), *acc)
        out["masks"] = g["masks"]
    if g is not None and g["content"] is not None:
        out["content_mask"] = g["content"]
    return out


def network_inputs(
    content_rgb: Array, style_rgbs: Sequence[Array], config: Config
) -> tuple[Array, list[Array]]:
    """What the network sees of C and S under ``config.preserve_color``.

    ``none``: the images. ``histogram``: S with C's colour mean and covariance
    (:func:`color.match_color`). ``luminance``: grey images of the luminance of C and of
    S, S's luminance matched to C's mean and std (Gatys et al. 2017, section 4.1).
    """
    c = jnp.asarray(content_rgb, jnp.float32)
    ss = [jnp.asarray(s, jnp.float32) for s in style_rgbs]
    if config.preserve_color == "histogram":
        return c, [jnp.clip(color.match_color(s, c), 0.0, 1.0) for s in ss]
    if config.preserve_color == "luminance":
        yc = color.luminance(c)
        return color.grey(yc), [
            color.grey(jnp.clip(color.match_luminance(color.luminance(s), yc), 0.0, 1.0))
            for s in ss]
    return c, ss


def to_variable(rgb: Array, config: Config) -> Array:
    """An RGB image as the optimised variable X: itself, or its luminance."""
    return color.luminance(rgb) if config.preserve_color == "luminance" else rgb


def network_image(X: Array, config: Config) -> Array:
    """The RGB image the network sees for the variable X."""
    return color.grey(X) if config.preserve_color == "luminance" else X


def output_image(X: Array, content_rgb: Array, config: Config) -> Array:
    """The RGB result for the variable X, in [0, 1].

    Luminance mode puts X's luminance on C's chroma (so C's I, Q are untouched);
    ``original_colors`` does the same post hoc for an RGB result.
    """
    if config.preserve_color == "luminance":
        rgb = color.with_chroma(X, content_rgb)
    elif config.original_colors:
        rgb = color.original_colors(X, content_rgb)
    else:
        rgb = X
    return jnp.clip(rgb, 0.0, 1.0)


def precision_scope(config: Config) -> contextlib.AbstractContextManager:
    """The matmul/conv precision of ``config.precision`` for everything traced inside.

    ``f32`` and ``bf16`` leave XLA's default (``None``): exact float32 on CPU, but TF32
    convolutions on NVIDIA GPUs since Ampere and single bf16 passes on TPUs.
    ``highest`` sets ``jax.default_matmul_precision("highest")``: true float32 on
    every backend (slower on GPU/TPU). The Gram matrices are computed at
    ``Precision.HIGHEST`` in every mode (:func:`nst_jax.losses.gram_matrix`).
    Used around the step (so the backward pass is traced under it too) and the targets.
    """
    if config.precision == "highest":
        return jax.default_matmul_precision("highest")
    return contextlib.nullcontext()


def vgg_features_rgb(
    params: vgg.Params, spec: vgg.Preprocessing, rgb: Array, layers: Sequence[str], pooling: str,
    dtype: Any = jnp.float32, padding: str = "zero",
) -> dict[str, Array]:
    """:func:`vgg.vgg_features` of an RGB image in [0, 1], computed in ``dtype``."""
    x = vgg.preprocess(jnp.asarray(rgb, jnp.float32), spec).astype(dtype)
    return vgg.vgg_features(params, x, layers, pooling=pooling, padding=padding)


def objective(
    X: Array, params: vgg.Params, targets: Targets, config: Config, spec: vgg.Preprocessing
) -> tuple[Array, dict[str, Array]]:
    """``J(G)`` and its components for the variable X (RGB ``(H, W, 3)``, or luminance
    ``(H, W, 1)`` in luminance mode); see :func:`losses.total_cost`."""
    with precision_scope(config):
        return _objective(X, params, targets, config, spec)


def _objective(
    X: Array, params: vgg.Params, targets: Targets, config: Config, spec: vgg.Preprocessing
) -> tuple[Array, dict[str, Array]]:
    G = network_image(X, config)
    if config.tile:
        return _tiled_objective(X, G, params, targets, config, spec)
    layers = [config.content_layer, *config.style_layers]
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    feats = vgg_features_rgb(params, spec, G, layers, config.pooling, dtype, config.padding)
    style_t = targets["style"]
    if config.style_loss == "swd":  # this step's directions, per layer
        from nst_jax import swd

        keys = swd.layer_keys(targets, config.style_layers)
        style_t = {k: {**v, "key": keys[k], "count": config.swd_directions} for k, v in style_t.items()}
    j, terms = losses.total_cost(
        targets["content"], style_t, feats[config.content_layer],
        {k: feats[k] for k in config.style_layers}, G,
        alpha=config.alpha, beta=config.beta, tv_weight=config.tv_weight,
        layer_weights=config.layer_weights, normalization=config.normalization,
        style_loss=config.style_loss, masks=targets.get("masks"),
        content_mask=targets.get("content_mask"), padding=config.padding,
    )
    from nst_jax.photo import BAND

    return _with_photo(j, terms, X, targets, config, band=BAND)


def _with_photo(j: Array, terms: dict[str, Array], X: Array, targets: Targets, config: Config,
                band: int = 0) -> tuple[Array, dict[str, Array]]:
    """``J + photo_weight * J_photo(X)`` when the targets hold the content's matting
    statistics (:func:`photo_targets`), with ``"photo"`` (unweighted) among the terms;
    summed in bands of ``band`` window rows (:data:`nst_jax.photo.BAND`: the same sum, a
    fraction of the memory, and faster on CPU: 1.10 s against 1.36 s for value and
    gradient at 1024 px).
    The term is on the variable X: RGB, or in luminance mode the luminance channel
    (the chroma is the content's, already a photo)."""
    if "matting" not in targets:
        return j, terms
    from nst_jax import photo

    jp = photo.photo_cost(X, targets["matting"], band=band)
    j = j + config.photo_weight * jp
    return j, {**terms, "total": j, "photo": jp}


def uses_photo(config: Config) -> bool:
    """Whether ``config.photo_weight`` may be non-zero (traced or an array of grid
    points counts as yes): the targets then carry the matting statistics."""
    w = config.photo_weight
    if isinstance(w, int | float):
        return w != 0
    try:
        return bool(np.any(np.asarray(w) != 0))
    except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return True


def photo_targets(targets: Targets, content_rgb: Any, config: Config) -> Targets:
    """``targets`` with ``"matting"``: the :func:`nst_jax.photo.matting_stats` of the
    content ``(H, W, 3)`` in RGB (the photo itself, whatever the network sees), when
    :func:`uses_photo`; else ``targets`` unchanged."""
    if not uses_photo(config):
        return targets
    from nst_jax import photo

    return {**targets, "matting": photo.matting_stats(np.asarray(content_rgb))}


def _tiled_objective(
    X: Array, G: Array, params: vgg.Params, targets: Targets, config: Config, spec: vgg.Preprocessing
) -> tuple[Array, dict[str, Array]]:
    """:func:`_objective` computed exactly, one tile at a time (:mod:`nst_jax.tiling`)."""
    from nst_jax import tiling

    prob = tiling.problem_for(G.shape, config, vgg.arch_of(params))
    xpad = tiling.pad_canvas(vgg.preprocess(jnp.asarray(G, jnp.float32), spec), prob.plan)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    weights = {"alpha": f32(config.alpha), "beta": f32(config.beta),
               "layers": tuple(f32(v) for v in config.style_weights)}
    guides = tiling.canvas_guides(prob, targets.get("masks"), targets.get("content_mask"))
    jnet, jc, js = tiling.tiled_terms(prob, xpad, params, targets["content"], targets["style"], weights,
                                      guides)
    tv = losses.total_variation(G)
    j = jnet + config.tv_weight * tv
    from nst_jax.photo import BAND

    return _with_photo(j, {"total": j, "content": jc, "style": js, "tv": tv}, X, targets, config,
                       band=BAND)


def box_penalty(X: Array) -> Array:
    """``sum(relu(X - 1)^2 + relu(-X)^2)``: squared distance of X to the box [0, 1]."""
    return jnp.sum(jnp.square(jax.nn.relu(X - 1.0)) + jnp.square(jax.nn.relu(-X)))


def evaluate(
    image: Array, content_rgb: Array, style_rgb: Array, params: vgg.Params,
    spec: vgg.Preprocessing, config: Config = Config(),
) -> dict[str, float]:
    """The cost components of an RGB ``image`` for a content/style pair (for reports)."""
    config = config.validate(vgg.arch_of(params))
    c_net, s_net = network_inputs(content_rgb, [style_rgb], config)
    targets = photo_targets(compute_targets(params, spec, c_net, s_net, config), content_rgb, config)
    X = to_variable(jnp.asarray(image, jnp.float32), config)
    _, c = objective(X, params, targets, config, spec)
    return {k: float(v) for k, v in c.items()}


__all__ = [
    "Targets", "box_penalty", "compute_targets", "content_target", "evaluate", "init_image", "network_image",
    "network_inputs", "objective", "output_image", "photo_targets", "precision_scope", "to_variable",
    "uses_photo", "vgg_features_rgb",
]
