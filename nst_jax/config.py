"""Every knob of a style-transfer run, with its documented default.

:class:`Config` is a ``flax.struct`` dataclass: the loss weights (``alpha``, ``beta``,
``tv_weight``, ``photo_weight``, ``style_weights``) are pytree leaves, so they may be traced (one
compiled program serves a whole ``vmap``-ed grid of them); everything that changes
the program's structure (layer names, optimizer, iteration count...) is a static
field. The CLI reads its defaults from here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import struct

from nst_jax import vgg
from nst_jax.color import PRESERVE_COLOR
from nst_jax.losses import NORMALIZATIONS
from nst_jax.statistics import STYLE_LOSSES, WHOLE_IMAGE_LOSSES

OPTIMIZERS = ("adam", "lbfgs", "sgd")
LBFGS_LINESEARCHES = ("zoom", "none")
PRECISIONS = ("f32", "highest", "bf16")
INITS = ("noise", "content", "content+noise")
DEFAULT_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
#: The photo mode's default ``photo_weight`` (README "Photo mode": chosen by a sweep).
PHOTO_WEIGHT = 1e8


def _static(default: Any) -> Any:
    return struct.field(pytree_node=False, default=default)


@struct.dataclass
class Config:
    """Settings of one run. Defaults were chosen with the real VGG16 weights at 256-384 px.

    Loss weights (traced):
      alpha: content weight (default 1).
      beta: style weight (default 1e-4). With the lecture normalisation and caffe-scaled
        VGG activations, J_style is ~1e4-1e5x larger than J_content (J_style of the
        content photo ~3e9, J_content of a white-noise image ~2e4 at 256 px), so
        beta/alpha = 1e-4 balances them; 1e-5 keeps more content, 1e-3 more style
        (chosen by a sweep on the bundled examples, see README).
      tv_weight: total-variation weight (default 0: Gatys et al. use none).
      photo_weight: weight of the photorealism term (default 0: off), the matting Laplacian
        energy of G per pixel and channel (:func:`nst_jax.photo.photo_cost`, Luan et al.
        2017); ``--photo`` sets :data:`PHOTO_WEIGHT`.
      style_weights: lambda_l per style layer (default 0.2 each).

    Structure (static):
      content_layer: default ``conv4_2`` (Gatys et al.).
      style_layers: default ``conv1_1 ... conv5_1``.
      optimizer: ``adam`` (default), ``lbfgs`` (Gatys et al.'s choice) or ``sgd``.
      learning_rate: Adam/SGD step in pixel units (pixels are in [0, 1]); default 0.02,
        i.e. up to ~2% of the range per step. Ignored by L-BFGS (line search).
      iterations: optimizer steps (L-BFGS: iterations, each one or more evaluations).
      init: ``content+noise`` (default), ``content`` or ``noise`` (white noise U(0, 1)).
      noise_ratio: r in ``(1 - r) * C + r * U(0, 1)`` for ``content+noise`` (default 0.2).
      pooling: ``max`` (default) or ``avg``.
      padding: what VGG's convolutions (and the TV term) see beyond the border: ``zero``
        (default, VGG's own), ``reflect`` or ``circular`` (the image wraps around; a
        texture made with it tiles seamlessly). Tiled runs need ``zero``.
      normalization: ``lecture`` (default), ``gatys``, ``jcjohnson`` or ``tf-tutorial``.
      lbfgs_history: L-BFGS memory size (default 10).
      lbfgs_linesearch: ``zoom`` (default: ``optax.lbfgs``'s line search, the box as a
        penalty) or ``none`` (:func:`nst_jax.lbfgs.lbfgs_fixed`: the full quasi-Newton step,
        one evaluation an iteration, pairs with ``s . y <= 0`` skipped, the box clipped: the
        L-BFGS of Torch's and PyTorch's neural-style).
      report_every: steps fused into one compiled call between progress reports.
      preserve_color: ``none`` (default); ``luminance``: optimise the luminance only and
        give the output the content's chroma (Gatys et al. 2017); ``histogram``: match the
        style image's colour mean/covariance to the content's before optimising.
      original_colors: post-hoc luminance swap onto the content's colours (older tools).
      avg_decay: ``d`` of the exponential moving average of G returned as the result
        (bias-corrected, ``avg_t / (1 - d^t)``); 0 (default) returns the last iterate.
      tol: stop when ``|J_t - J_{t-w}| / |J_{t-w}| < tol`` over ``tol_window`` steps
        (checked inside the compiled loop); 0 (default) runs all iterations.
      tol_window: ``w`` above (default 20).
      scales: coarse-to-fine scales (default 1: the full size only). With ``n > 1`` the
        image is optimised at ``n`` sizes growing geometrically from ``min_size`` to the
        full size, each for ``iterations`` steps, G upsampled to start the next scale;
        targets are recomputed per scale and the optimizer state is reset (its moments
        and L-BFGS pairs belong to the old pixel grid).
      min_size: longest side of the first scale (default 0: full size / 2^(scales-1)).
      style_loss: the style statistic: ``gram`` (default), ``meancov``, ``w2``
        (:mod:`nst_jax.statistics`), ``hist`` (:mod:`nst_jax.histogram`), ``swd``
        (:mod:`nst_jax.swd`) or ``mrf`` (:mod:`nst_jax.mrf`); the last three need the
        whole image (no ``tile``, no regions).
      swd_directions: random directions per layer and step of ``swd`` (default 64).
      mrf_augment: ``mrf`` also matches rotated and rescaled copies of the style's
        patches (:data:`nst_jax.mrf.AUGMENT`; default off).
      precision: what the VGG convolutions compute (Grams are always float32 at
        ``Precision.HIGHEST``, costs float32); see :func:`nst_jax.optimize.precision_scope`.
        ``f32`` (default): float32 arrays at XLA's default precision: exact on CPU,
        TF32 on NVIDIA GPUs (Ampere and later), bf16 passes on TPUs.
        ``highest``: true float32 everywhere (``jax.default_matmul_precision("highest")``).
        ``bf16``: the convolutions of G in bfloat16 with float32 accumulation; targets
        stay float32.
      tile: 0 (default): the whole image at once. ``n > 0``: the cost and its gradient
        are computed exactly, in tiles of at most ``n x n`` pixels plus a halo
        (:mod:`nst_jax.tiling`): memory of one tile's forward/backward pass plus a few
        image-sized arrays, for about twice the time. At least the halo of the deepest
        layer (64 px for VGG16's ``conv5_1``, 80 for VGG19's).
      box_weight: L-BFGS with the zoom line search only: weight of the penalty
        ``sum(dist(X, [0, 1])^2)`` that keeps pixels in the box (default 1e4; Adam, SGD and
        ``lbfgs_linesearch="none"`` clip instead). Raise it with alpha and beta if you
        scale them up by a lot.
    """

    alpha: float = 1.0
    beta: float = 1e-4
    tv_weight: float = 0.0
    photo_weight: float = 0.0
    style_weights: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)
    content_layer: str = _static("conv4_2")
    style_layers: tuple[str, ...] = _static(DEFAULT_STYLE_LAYERS)
    optimizer: str = _static("adam")
    learning_rate: float = _static(0.02)
    iterations: int = _static(400)
    init: str = _static("content+noise")
    noise_ratio: float = _static(0.2)
    pooling: str = _static("max")
    padding: str = _static("zero")
    normalization: str = _static("lecture")
    lbfgs_history: int = _static(10)
    lbfgs_linesearch: str = _static("zoom")
    report_every: int = _static(25)
    preserve_color: str = _static("none")
    original_colors: bool = _static(False)
    avg_decay: float = _static(0.0)
    tol: float = _static(0.0)
    tol_window: int = _static(20)
    scales: int = _static(1)
    min_size: int = _static(0)
    box_weight: float = _static(1e4)
    precision: str = _static("f32")
    style_loss: str = _static("gram")
    swd_directions: int = _static(64)
    mrf_augment: bool = _static(False)
    tile: int = _static(0)

    def validate(self, arch: str = "vgg19") -> Config:
        """Check every static field (and numeric leaves that are plain numbers).

        Returns ``self`` with layer names canonicalised for ``arch``.

        Raises:
          ValueError: naming the field, what was expected and what arrived.
        """
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        need(self.optimizer in OPTIMIZERS,
             f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(self.init in INITS, f"init: expected one of {INITS}, got {self.init!r}")
        need(self.pooling in vgg.POOLINGS,
             f"pooling: expected one of {vgg.POOLINGS}, got {self.pooling!r}")
        need(self.normalization in NORMALIZATIONS,
             f"normalization: expected one of {NORMALIZATIONS}, got {self.normalization!r}")
        need(isinstance(self.iterations, int) and self.iterations > 0,
             f"iterations: expected a positive integer, got {self.iterations!r}")
        need(isinstance(self.report_every, int) and self.report_every > 0,
             f"report_every: expected a positive integer, got {self.report_every!r}")
        need(self.learning_rate > 0, f"learning_rate: expected > 0, got {self.learning_rate}")
        need(0.0 <= self.noise_ratio <= 1.0,
             f"noise_ratio: expected a value in [0, 1], got {self.noise_ratio}")
        need(self.lbfgs_history > 0, f"lbfgs_history: expected > 0, got {self.lbfgs_history}")
        need(self.lbfgs_linesearch in LBFGS_LINESEARCHES,
             f"lbfgs_linesearch: expected one of {LBFGS_LINESEARCHES}, got {self.lbfgs_linesearch!r}")
        need(self.preserve_color in PRESERVE_COLOR,
             f"preserve_color: expected one of {PRESERVE_COLOR}, got {self.preserve_color!r}")
        need(0.0 <= self.avg_decay < 1.0,
             f"avg_decay: expected a value in [0, 1), got {self.avg_decay}")
        need(self.tol >= 0.0, f"tol: expected >= 0, got {self.tol}")
        need(isinstance(self.tol_window, int) and self.tol_window > 0,
             f"tol_window: expected a positive integer, got {self.tol_window!r}")
        need(isinstance(self.scales, int) and self.scales > 0,
             f"scales: expected a positive integer, got {self.scales!r}")
        need(isinstance(self.min_size, int) and self.min_size >= 0,
             f"min_size: expected an integer >= 0, got {self.min_size!r}")
        need(self.style_loss in STYLE_LOSSES,
             f"style_loss: expected one of {STYLE_LOSSES}, got {self.style_loss!r}")
        need(self.precision in PRECISIONS,
             f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        need(isinstance(self.tile, int) and self.tile >= 0,
             f"tile: expected an integer >= 0 (0: no tiling), got {self.tile!r}")
        need(self.style_loss not in WHOLE_IMAGE_LOSSES or not self.tile,
             f"style_loss {self.style_loss!r}: tiled runs need "
             + ("patch matches over the whole image (exact tiling would hold for this local "
                "term, but is not built)" if self.style_loss == "mrf" else
                "quantiles of the whole image, which the tiles do not have")
             + "; use --tile 0, or gram, meancov or w2")
        need(isinstance(self.swd_directions, int) and self.swd_directions > 0,
             f"swd_directions: expected a positive integer, got {self.swd_directions!r}")
        need(self.padding in vgg.PADDINGS,
             f"padding: expected one of {vgg.PADDINGS}, got {self.padding!r}")
        need(self.padding == "zero" or not self.tile,
             f"padding {self.padding!r}: tiled runs need zero padding (the windows are exact "
             "only for it); use --tile 0 or --padding zero")
        need(self.box_weight >= 0, f"box_weight: expected >= 0, got {self.box_weight}")
        need(len(self.style_layers) > 0, "style_layers: expected at least one layer")
        need(len(self.style_weights) == len(self.style_layers),
             f"style_weights: expected {len(self.style_layers)} values (one per style layer), "
             f"got {len(self.style_weights)}")
        for name in ("alpha", "beta", "tv_weight", "photo_weight"):
            v = getattr(self, name)
            if isinstance(v, int | float):
                need(v >= 0, f"{name}: expected >= 0, got {v}")
        for v in self.style_weights:
            if isinstance(v, int | float):
                need(v >= 0, f"style_weights: expected values >= 0, got {v}")
        content = vgg.canonical_layer(self.content_layer, arch)
        style = tuple(vgg.canonical_layer(s, arch) for s in self.style_layers)
        need(len(set(style)) == len(style), f"style_layers: duplicate layer in {style}")
        return dataclasses.replace(self, content_layer=content, style_layers=style)

    @property
    def layer_weights(self) -> dict[str, Any]:
        """``{style layer: lambda_l}``."""
        return dict(zip(self.style_layers, self.style_weights, strict=True))
