"""[I/O] Photo mode on the command line: ``--photo`` / ``--photo-weight`` (the
photorealism term), ``--auto-regions K`` (k-means masks, written for editing) and
``--smooth`` (Li et al. 2018's post-pass), shared by ``stylize``, ``grid``, ``batch``
and ``video``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nst_jax.cli.common import CliError

#: Colours of the written region labels (16, pairwise >= 80 apart in RGB, none black).
LABEL_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                 (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
                 (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195),
                 (0, 0, 128))
#: Content whose channels differ by less than this everywhere is grayscale.
GREY_TOLERANCE = 1.5 / 255


def photo_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~nst_jax.config.Config` fields of the photo flags: ``photo_weight``
    (``--photo-weight``; with ``--photo`` and no weight, :data:`~nst_jax.config.PHOTO_WEIGHT`)
    and, with ``--photo``, ``init="content"`` unless ``--init`` was given."""
    from nst_jax.config import PHOTO_WEIGHT, Config

    photo = getattr(args, "photo", False)
    w = getattr(args, "photo_weight", None)
    out: dict[str, Any] = {"photo_weight": (PHOTO_WEIGHT if photo else 0.0) if w is None else w}
    argv = getattr(args, "argv", None) or sys.argv
    given = any(a == "--init" or a.startswith("--init=") for a in argv)
    if photo and getattr(args, "init", None) == Config().init and not given:
        out["init"] = "content"
    return out


def check_photo_inputs(args: argparse.Namespace, n_styles: int) -> None:
    """Refuse flag combinations of photo mode before anything is loaded."""
    k = getattr(args, "auto_regions", None)
    if not k:
        return
    if n_styles != 1:
        raise CliError(f"--auto-regions {k}: expected one style image, got {n_styles}")
    given = [f for f, v in (("STYLE:MASK", getattr(args, "style_masks", None)),
                            ("--mask-colors", getattr(args, "mask_colors", None)),
                            ("--style-regions", getattr(args, "style_regions", None))) if v]
    if given:
        raise CliError(f"--auto-regions with {given[0]}: give the regions one way or the other")


def check_colour(args: argparse.Namespace, content: np.ndarray, name: str | None = None) -> None:
    """``--photo`` needs a colour content: the matting Laplacian of a grey photo cannot
    tell regions of equal brightness apart and there is no colour to keep."""
    if getattr(args, "photo", False) and float(np.max(np.ptp(content, axis=-1))) < GREY_TOLERANCE:
        raise CliError(f"--photo: {Path(name or args.content).name} is grayscale; photo mode transfers "
                       "colour between photos and needs a colour content image")


def region_paths(out: Path, k: int) -> list[Path]:
    """What ``--auto-regions K`` writes beside OUT: the content's colour-coded regions
    (``--mask-colors`` reads it), each region's style mask, and the pairs side by side."""
    return [out.with_name(f"{out.stem}.regions.png"), out.with_name(f"{out.stem}.pairs.png"),
            *(out.with_name(f"{out.stem}.style-region-{r}.png") for r in range(k))]


def _in_reading_order(pairing: Any) -> Any:
    """The regions ordered as ``--mask-colors`` reads colours: by first pixel, row-major."""
    first = [int(np.flatnonzero(m.reshape(-1))[0]) for m in pairing.content]
    o = np.argsort(first, kind="stable")
    return dataclasses.replace(pairing, content=pairing.content[o], style=tuple(pairing.style[i] for i in o),
                               shares=pairing.shares[o], labels=tuple(pairing.labels[i] for i in o))


def find_regions(args: argparse.Namespace, params: Any, spec: Any, config: Any, content: np.ndarray,
                 style: np.ndarray, content_mask: Any = None) -> tuple[Any, Any]:
    """``(Pairing, Guides)`` of ``--auto-regions K``: the content and the style clustered
    jointly (:func:`nst_jax.autoregions.auto_regions`); the guides give region ``r`` of G
    the statistics of its partner region of the style (the style image once per region),
    or of the whole style where there is none. Checked at every scale of the run."""
    from nst_jax import autoregions, problem
    from nst_jax.guides import Guides

    layer = autoregions.FEATURE_LAYER
    fc, fs = (np.asarray(problem.vgg_features_rgb(params, spec, x, [layer], config.pooling)[layer])
              for x in (content, style))
    try:
        pairing = autoregions.auto_regions(fc, fs, np.asarray(content), np.asarray(style),
                                           args.auto_regions, seed=args.seed)
    except ValueError as e:
        raise CliError(f"--auto-regions {args.auto_regions}: " + str(e).removeprefix("k: ")) from None
    pairing = _in_reading_order(pairing)
    n = len(pairing.content)
    guides = Guides(regions=pairing.content, region_of=tuple(range(n)),
                    style_masks=pairing.style, content=content_mask)
    _check_at_every_scale(guides, content.shape[:2], style.shape[:2], config, args.auto_regions)
    return pairing, guides


def _check_at_every_scale(guides: Any, c_hw: tuple[int, ...], s_hw: tuple[int, ...], config: Any,
                          k: int) -> None:
    """Every region must reach every style layer at every scale (:func:`nst_jax.guides.at_layers`)."""
    from nst_jax import guides as Gu
    from nst_jax.engine import scale_sizes, style_sizes

    s_hws = [tuple(s_hw)] * len(guides.style_masks)
    try:
        for hw in scale_sizes(*c_hw, config):
            Gu.at_layers(guides, hw, style_sizes(tuple(c_hw), s_hws, hw), config)
    except ValueError as e:
        raise CliError(f"--auto-regions {k}: {e}; ask for fewer regions") from None


def describe_pairs(pairing: Any, k: int) -> list[str]:
    """One line per region, and one per failure, for stderr."""
    lines = [f"--auto-regions {k}: {len(pairing.content)} regions in the content"]
    for r, (sc, ss) in enumerate(pairing.shares):
        c = LABEL_COLOURS[r]
        where = (f"{ss:.0%} of the style" if pairing.style[r] is not None else
                 f"no partner in the style ({ss:.1%} of it): whole-image style there")
        lines.append(f"  region {r} #{c[0]:02x}{c[1]:02x}{c[2]:02x}: {sc:.0%} of the content <- {where}")
    return lines


def write_regions(out: Path, pairing: Any, content: np.ndarray, style: np.ndarray, *,
                  overwrite: bool, command: str) -> list[Path]:
    """Write :func:`region_paths` (atomically, never over a file without ``overwrite``):
    editable masks and a picture of the pairs; returns the paths written."""
    from nst_jax import image as I

    pal = np.asarray(LABEL_COLOURS, np.float32) / 255.0
    labels = np.einsum("rhw,rc->hwc", pairing.content, pal[: len(pairing.content)])
    style_lab = np.zeros_like(style)
    for r, m in enumerate(pairing.style):
        if m is not None:
            style_lab += m[..., None] * pal[r]
    h = max(content.shape[0], style.shape[0])

    def col(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0)), constant_values=1.0)

    top = np.concatenate([col(content), col(style)], axis=1)
    bottom = np.concatenate([col(0.5 * content + 0.5 * labels), col(0.5 * style + 0.5 * style_lab)], axis=1)
    paths = region_paths(out, len(pairing.content))
    meta = {"nst_jax": "auto-regions", "rerun": command}
    written = [I.save_image(paths[0], labels, meta, overwrite=overwrite, sidecar=False),
               I.save_image(paths[1], np.concatenate([top, bottom]), meta, overwrite=overwrite,
                            sidecar=False)]
    for r, m in enumerate(pairing.style):
        if m is not None:
            written.append(I.save_image(paths[2 + r], np.repeat(m[..., None], 3, -1), meta,
                                        overwrite=overwrite, sidecar=False))
    return written


def rerun_command(args: argparse.Namespace, out: Path, pairing: Any) -> str:
    """The flags that reuse (edited) masks instead of clustering again."""
    paths = region_paths(out, len(pairing.content))
    style = args.style[0]
    regions = " ".join(str(paths[2 + r]) if m is not None else "-" for r, m in enumerate(pairing.style))
    return (f"{args.content} {' '.join([style] * len(pairing.content))} --mask-colors {paths[0]} "
            f"--style-regions {regions}")


def write_auto_regions(pr: Any, args: argparse.Namespace, out: Path | None, *,
                       make_folder: bool = False) -> None:
    """Write the masks of ``--auto-regions`` (``pr.regions``) beside ``out`` (its folder
    made first with ``make_folder``: a grid's) and print the pairs (nothing without it,
    or with ``out`` None: not process 0)."""
    pairing = getattr(pr, "regions", None)
    if pairing is None or out is None:
        return
    if make_folder:
        out.parent.mkdir(parents=True, exist_ok=True)
    cmd = rerun_command(args, out, pairing)
    try:
        write_regions(out, pairing, np.asarray(pr.content), np.asarray(pr.styles[0]),
                      overwrite=args.overwrite, command=cmd)
    except OSError as e:
        raise CliError(f"--auto-regions: masks not written ({e})") from None
    if not args.quiet:
        print("\n".join(describe_pairs(pairing, args.auto_regions)), file=sys.stderr)
        print(f"  masks: {region_paths(out, 1)[0]} (edit, then rerun with: {cmd})", file=sys.stderr)


def smooth_result(image: np.ndarray, content: np.ndarray, lam: float, band: int = 0) -> np.ndarray:
    """Li et al. 2018's smoothing of a result ``(H, W, 3)`` against the content at the same
    size (:func:`nst_jax.photo.smooth`), clipped to [0, 1]; ``band`` rows at a time."""
    import jax.numpy as jnp

    from nst_jax import photo

    if image.shape != content.shape:
        from nst_jax.scales import resize

        content = np.asarray(resize(jnp.asarray(content), image.shape[:2]))
    stats = photo.matting_stats(content)
    return np.clip(np.asarray(photo.smooth(jnp.asarray(image), stats, lam, band=band)), 0.0, 1.0)


__all__ = [
    "check_colour",
    "check_photo_inputs",
    "describe_pairs",
    "find_regions",
    "photo_fields",
    "region_paths",
    "rerun_command",
    "smooth_result",
    "write_auto_regions",
    "write_regions",
]
