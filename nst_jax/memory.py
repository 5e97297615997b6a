"""Predict the peak memory of a run before compiling anything.

Model (bytes)::

    peak = max(step, weights + runtime + targets + K_TARGETS * 2 * activations * 4)
    step = weights + runtime + targets
           + points * (K * activations * act_bytes + extra + images * H * W * 3 * 4)

(the second term: computing the targets, the forward passes of C and S, which is the
peak of whole-image runs from ~1024 px on; with ``tile`` both terms use one window's
activations and the step adds ``TILE_IMAGES`` canvas copies)

- ``weights``: the conv parameters of the layers used, kernels twice (the driver keeps
  each kernel's flipped copy for the input gradient, :func:`nst_jax.vgg.with_backward_kernels`);
- ``runtime``: one more copy of those kernels, which the process holds outside XLA's
  buffer assignment (XLA:CPU's convolution library packs each kernel into its own
  layout); ``runtime=False`` leaves it out, to compare with :func:`xla_bytes`. On CPU
  (one device) the layers that run as Winograd convolutions give XLA their transforms
  (16/9 of the kernel, :func:`nst_jax.winograd.winograd_kernel`) instead of the kernel and
  its flipped copy, which the process still holds (with the runtime copy), and the
  step holds the largest such layer's transformed input and product (``wt``);
- ``targets``: the content activations and the style Grams;
- ``activations``: ``sum_l H_l W_l C_l`` over the conv layers up to the deepest layer
  used (post-ReLU outputs kept for the backward pass);
- ``K = 1.25``: the forward activations plus the backward pass's transient buffers;
- ``act_bytes``: 4 in f32; in bf16 2 on GPUs/TPUs (not measured here), but 4 on CPU,
  where XLA computes bf16 convolutions in f32 and the fused loop (Adam, SGD) also
  holds bf16 copies: ``extra = 2 * kernels + activations`` bytes (L-BFGS: 0);
- ``images``: G, the running average and the optimizer state (Adam: 2 moments;
  L-BFGS: the history pairs plus 6 line-search copies, as measured on the driver's
  single-step path).

Fitted and validated on CPU with the command-line tools' XLA setting
(``nst_jax.cli.CPU_XLA_FLAG``; without it XLA:CPU uses ~1.8x more) against the
process's measured resident memory (``benchmarks/bench_step.py``, VGG16/VGG19,
256-1024 px, Adam/L-BFGS, f32/bf16: every row within 20%); the tests check the XLA
part against XLA's own buffer assignment (:func:`xla_bytes`).

:func:`largest_size` inverts the model for a memory budget; the CLI uses
:func:`available_bytes` to refuse a size that cannot fit, with a suggestion.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from nst_jax import vgg, winograd

K_ACTIVATIONS = 1.25
#: Canvas-sized float32 RGB copies that tiling adds (the padded input kept for the
#: backward pass, the gradient accumulated over the tiles, its trimmed copy).
TILE_IMAGES = 3
#: The targets' program (forward passes of C and S to the deepest layer, whole or one
#: window at a time) holds about 1.2x their activations: fitted to the whole-process
#: peaks of benchmarks/bench_tile.py (VGG19, 1024 and 2048 px: 2.9 and 11.5 GB measured,
#: where the step alone holds 2.0 and 6.6 GB).
K_TARGETS = 1.2
#: What a tiled run holds beyond the model's arrays, fitted (0.30-0.41 GiB) to the six
#: tiled rows of benchmarks/bench_tile.py at 512-2048 px; the 4096 px row is held out.
TILE_OVERHEAD = int(0.37 * 2**30)
#: Photo mode (:mod:`nst_jax.photo`), bytes per pixel: the content's matting statistics
#: (27 + 9 float32); the term is summed in bands of ``photo.BAND`` rows, rematerialised:
#: the gradient's carry per pixel plus one band's temporaries, 466 B per pixel of the band
#: (XLA's ``memory_analysis`` of ``value_and_grad(photo_cost)``: 466 B/px whole, 38 B/px
#: in 64-row bands at 1024 px, 19 at 2048).
PHOTO_STATS, PHOTO_BAND_PX, PHOTO_CARRY = 144, 466, 12


def _layers_used(arch: str, deepest: str) -> list[str]:
    names = vgg.layer_names(arch)
    return list(names[: names.index(vgg.canonical_layer(deepest, arch)) + 1])


def predict_bytes(
    arch: str,
    height: int,
    width: int,
    *,
    optimizer: str = "adam",
    precision: str = "f32",
    points: int = 1,
    deepest: str = "conv5_1",
    lbfgs_history: int = 10,
    platform: str = "cpu",
    runtime: bool = True,
    tile: int = 0,
    shards: int = 1,
    photo: bool = False,
) -> int:
    """Predicted peak bytes of optimising ``points`` images of ``height x width``.

    ``platform``: ``jax.devices()[0].platform`` of the run (``cpu``, ``gpu``, ``tpu``);
    it changes only what bf16 costs. ``runtime=False``: XLA's buffers only.
    ``tile``: ``Config.tile``; the activations are then those of one window (tile plus
    halo, :mod:`nst_jax.tiling`) and ``TILE_IMAGES`` canvas-sized copies are added.
    ``shards``: the image split by rows over that many devices (per device: the
    weights and targets whole, the rest divided).
    ``photo``: the photorealism term is on (:data:`PHOTO_STATS` per pixel with the
    targets, the term's temporaries per point).
    """
    shapes = vgg.conv_shapes(arch)
    used = _layers_used(arch, deepest)
    kernels = sum(4 * 9 * k[2] * k[3] for n, (k, _) in shapes.items() if n in used)
    biases = sum(4 * b[0] for n, (_, b) in shapes.items() if n in used)
    canvas = 0
    ah, aw = height, width
    if tile and max(height, width) > tile:
        from nst_jax import tiling

        plan = tiling.plan_tiles((height, width), tile, arch, [deepest])
        ah, aw = plan.window
        ch, cw = plan.canvas
        canvas = TILE_IMAGES * ch * cw * 3 * 4
    # Winograd layers (CPU, one device) give XLA's programs their transforms (16/9 of
    # the kernel) instead of the kernel and its flipped copy; the process holds all three
    wino = platform == "cpu" and shards == 1 and precision != "bf16"
    wk, wt = _winograd(arch, used, ah, aw) if wino else (0, 0)
    weights = 2 * (kernels - wk) + wk * 16 // 9 + biases + ((kernels - wk) + 2 * wk if runtime else 0)
    acts = _activations(arch, used, ah, aw)
    targets = _targets(arch, used, height, width)
    bf16_cpu = precision == "bf16" and platform == "cpu"
    act_bytes = 2 if precision == "bf16" and not bf16_cpu else 4
    extra = 2 * kernels + acts if bf16_cpu and optimizer != "lbfgs" else 0
    images = 2 + (2 if optimizer == "adam" else 2 * lbfgs_history + 6 if optimizer == "lbfgs" else 0)
    per_point = K_ACTIVATIONS * acts * act_bytes + extra + wt + images * height * width * 3 * 4 + canvas
    if photo:
        targets += PHOTO_STATS * height * width
        from nst_jax.photo import BAND

        per_point += (PHOTO_CARRY * height + PHOTO_BAND_PX * min(BAND, height)) * width
    step = weights + targets + points * per_point / shards
    # The targets are computed first, in one program: the forward passes of C and of S
    # (the CLI's default style size is G's), measured at K_TARGETS x their activations.
    # Fitted on XLA:CPU (whose convolutions pack their input patches); elsewhere the CLI
    # asks XLA for the step's own figure.
    # (tiled: one window of one image at a time, in a scan)
    forward = K_TARGETS * 4 * (1 if canvas else 2) * acts / shards if platform == "cpu" else 0
    return int(max(step, weights + targets + forward) + (TILE_OVERHEAD if canvas else 0))


def _walk(arch: str, used: list[str], h: int, w: int) -> Iterator[tuple[str, int, int, int, int]]:
    """``(name, H_l, W_l, Cin, Cout)`` of each conv layer ``used`` for an ``h x w`` input."""
    shapes = vgg.conv_shapes(arch)
    for n in used:
        if n.endswith("_1") and n != "conv1_1":
            h, w = h // 2, w // 2
        k = shapes[n][0]
        yield n, h, w, k[2], k[3]


def _activations(arch: str, used: list[str], h: int, w: int) -> int:
    """``sum_l H_l W_l C_l`` over the conv layers ``used`` for an ``h x w`` input."""
    return sum(hl * wl * c for _, hl, wl, _, c in _walk(arch, used, h, w))


def _winograd(arch: str, used: list[str], h: int, w: int) -> tuple[int, int]:
    """``(kernels, transient)`` bytes of the ``used`` layers that run as Winograd
    convolutions (:func:`nst_jax.winograd.winograd_wins` at their size for an ``h x w``
    input): their kernels, and the largest layer's transformed input and product
    (``16 ceil(h/2) ceil(w/2) (Cin + Cout)`` floats, 4x the layer's own arrays)."""
    wide = [(hl, wl, ci, co) for _, hl, wl, ci, co in _walk(arch, used, h, w)
            if winograd.winograd_wins(hl, wl, ci, co)]
    kernels = sum(4 * 9 * ci * co for _, _, ci, co in wide)
    transient = max((4 * 16 * ((hl + 1) // 2) * ((wl + 1) // 2) * (ci + co) for hl, wl, ci, co in wide),
                    default=0)
    return kernels, transient


def _targets(arch: str, used: list[str], h: int, w: int) -> int:
    """Bytes of the targets: the content activations (``conv4_2``) and the Grams."""
    total = 0
    for n, hl, wl, _, c in _walk(arch, used, h, w):
        total = max(total, 4 * hl * wl * c) if n == "conv4_2" else total
        total += 4 * c * c if n.endswith("_1") else 0
    return total


def largest_tile(budget_bytes: int, arch: str, height: int, width: int, **kw: Any) -> int:
    """The largest tile (a multiple of the pooling stride, at least the halo) whose
    prediction fits ``budget_bytes`` at ``height x width``; 0 when none does."""
    from nst_jax import tiling

    halo, align = tiling.receptive_halo(arch, [kw.get("deepest", "conv5_1")])
    lo = max(halo, align)
    hi = max(lo, -(-max(height, width) // align) * align)
    def fits(t: int) -> bool:
        return predict_bytes(arch, height, width, tile=t, **kw) <= budget_bytes

    # predictions are cheap and the candidate sizes few: the first that fits, from the top
    return next((t for t in range(hi, lo - 1, -align) if fits(t)), 0)


def largest_size(budget_bytes: int, arch: str, *, aspect: float = 1.0, **kw: Any) -> int:
    """The largest longest side (pixels) whose prediction fits ``budget_bytes``.

    ``aspect`` is height / width of the image (<= 1 for landscape).
    """
    def fits(side: int) -> bool:
        h, w = (side, round(side / aspect)) if aspect > 1 else (round(side * aspect), side)
        return predict_bytes(arch, max(h, 1), max(w, 1), **kw) <= budget_bytes

    lo, hi = 16, 16
    while fits(hi * 2) and hi < 1 << 16:
        hi *= 2
    hi *= 2
    if not fits(lo):
        return 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def available_bytes(device: Any = None) -> int | None:
    """Memory the run may use: the accelerator's limit, or the host's available RAM."""
    import jax

    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # not every backend reports
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def compiled_bytes(arch: str, height: int, width: int, config: Any = None, *,
                   points: int = 1) -> int:
    """XLA's own figure for the fused run loop at this size (compiles it): arguments +
    temporaries + outputs - aliased (donated) bytes, from
    ``jit(...).lower(...).compile().memory_analysis()``; ``points > 1`` vmaps it as the
    grid does (the points one device holds). The driver's program has the same shapes,
    so JAX's compilation cache usually serves it afterwards.

    Raises:
      RuntimeError: the backend gives no memory analysis.
    """
    import jax
    import jax.numpy as jnp

    from nst_jax.config import Config
    from nst_jax.layout import Layout
    from nst_jax.optimize import compute_targets, init_loop_state, make_optimizer, make_run_fn

    cfg = (config or Config()).replace(iterations=2, report_every=2).validate(arch)
    raw = vgg.synthetic_params(arch, vgg.CHANNELS, key=jax.random.key(0))
    # as the engine gives them (with the Winograd kernels on CPU)
    params = vgg.with_backward_kernels(raw, winograd=Layout().winograd(cfg.precision))
    C = jnp.full((height, width, 3), 0.5)
    targets = compute_targets(params, vgg.CAFFE, C, C, cfg)
    tx = make_optimizer(cfg)
    ls = init_loop_state(tx, C, cfg)
    run = make_run_fn(tx, vgg.CAFFE, 2)
    X, conf = C, cfg
    if points > 1:
        run = jax.vmap(run, in_axes=(0, 0, None, None, 0, None))
        X, ls, conf = (jax.tree.map(lambda a: jnp.broadcast_to(a, (points, *jnp.shape(a))), t)
                       for t in (C, ls, cfg))
    m = jax.jit(run, donate_argnums=(0, 1)).lower(
        X, ls, params, targets, conf, jnp.int32(2)).compile().memory_analysis()
    if m is None:
        raise RuntimeError("this backend gives no memory analysis")
    return int(m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
               - m.alias_size_in_bytes)


def xla_bytes(arch: str, height: int, width: int, *, optimizer: str = "adam",
              precision: str = "f32") -> int:
    """XLA's own buffer assignment for the fused step (compiles it; for validation)."""
    from nst_jax.config import Config

    return compiled_bytes(arch, height, width, Config(optimizer=optimizer, precision=precision))
