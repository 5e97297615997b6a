"""[I/O] Regions and masks on the command line (Gatys et al. 2017, section 3).

``STYLE:MASK`` puts a style where MASK is white in G; styles with the same MASK share
(and blend in) one region, and styles without one take the rest of the image.
``--mask-colors IMG`` gives every region at once as a colour-coded image;
``--style-regions`` says which pixels of each style image to learn from;
``--content-mask`` is the per-pixel content strength. Everything is loaded and
checked here, at every coarse-to-fine scale, before anything is compiled.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from nst_jax.cli.common import CliError


def split_styles(specs: list[str]) -> tuple[list[str], list[str | None]]:
    """``STYLE[:MASK]`` -> (style paths, mask paths or None).

    A spec naming an existing file is a style alone (so paths with colons still work).
    Otherwise it is split at the first colon that leaves an existing style file on its
    left, so a mask may have colons in its name (``s.png:masks/m:k.png``). When no split
    names an existing style, the error says what was tried.
    """
    paths: list[str] = []
    masks: list[str | None] = []
    for spec in specs:
        if ":" not in spec or Path(spec).exists():
            paths.append(spec)
            masks.append(None)
            continue
        cuts = [i for i, ch in enumerate(spec) if ch == ":"]
        for i in cuts:
            style, mask = spec[:i], spec[i + 1:]
            if style and Path(style).is_file():
                if not mask:
                    raise CliError(f"style {spec!r}: expected STYLE or STYLE:MASK (the mask is empty)")
                paths.append(style)
                masks.append(mask)
                break
        else:
            tried = [spec[:i] for i in cuts if spec[:i]]
            raise CliError(f"style image not found: {spec!r} is not a file, and no STYLE:MASK "
                           f"split of it names an existing style image (tried "
                           f"{', '.join(map(repr, tried)) or 'nothing before the colon'})")
    return paths, masks


def _load_mask(path: str, size: int, what: str, image: str | None = None,
               stretch: bool = False) -> np.ndarray:
    """A grayscale mask ``(h, w)`` in [0, 1] (colour images: the mean of R, G, B),
    its longest side ``size`` (or less); its aspect ratio checked against the file
    ``image``'s (both from the headers, before decoding)."""
    from nst_jax import guides as Gu
    from nst_jax import image as I

    try:
        mask_hw = I.image_shape(path)
        image_hw = I.image_shape(image) if image is not None else None
    except I.ImageError as e:
        raise CliError(f"{what}: {e}") from None
    if image_hw is not None:
        try:
            Gu.check_aspect(mask_hw, image_hw, what, stretch)
        except ValueError as e:
            raise CliError(f"{e}".replace("its image", f"its image {Path(image).name}")
                           .replace(" (Guides(stretch=True))", "")) from None
    try:
        return I.load_image(path, size).mean(axis=-1)
    except I.ImageError as e:
        raise CliError(f"{what}: {e}") from None


def _label_regions(path: str, n_styles: int, content: str, stretch: bool) -> tuple[np.ndarray, list[str]]:
    """The regions of a colour-coded image (:func:`nst_jax.guides.regions_from_labels`)."""
    from nst_jax import guides as Gu
    from nst_jax import image as I

    _load_mask(path, 1, "--mask-colors", content, stretch)  # readable, and its aspect ratio
    try:
        rgb = I.load_image(path)
    except I.ImageError as e:
        raise CliError(f"--mask-colors: {e}") from None
    masks, colours = Gu.regions_from_labels(np.round(rgb * 255).astype(np.uint8))
    hexes = ["#{:02x}{:02x}{:02x}".format(*c) for c in colours]
    if len(colours) != n_styles:
        raise CliError(f"--mask-colors {path}: {len(colours)} colours ({', '.join(hexes)}) for "
                       f"{n_styles} style image(s); expected one colour per style, in the order "
                       "the colours first appear from the top left")
    return masks, hexes


def load_guides(args: argparse.Namespace, mask_paths: list[str | None], styles: list[str],
                content_hw: tuple[int, int], style_hws: list[tuple[int, int]], config: Any
                ) -> tuple[Any, str | None]:
    """The :class:`~nst_jax.guides.Guides` of the flags (None when none is given),
    checked at every scale of the run, and a line that says which style goes where;
    every problem becomes a :class:`CliError`."""
    from nst_jax import guides as Gu
    from nst_jax.engine import scale_sizes, style_sizes

    size = max(content_hw)
    names = [Path(s).name for s in styles]
    stretch = args.mask_resize == "stretch"
    regions, of, labels = None, None, []
    if args.mask_colors and any(mask_paths):
        raise CliError("--mask-colors with STYLE:MASK: give the regions one way or the other")
    if args.mask_colors:
        regions, hexes = _label_regions(args.mask_colors, len(styles), args.content, stretch)
        labels = [f"{h} <- {n}" for h, n in zip(hexes, names, strict=True)]
    elif any(mask_paths):
        order = list(dict.fromkeys(m for m in mask_paths if m))
        loaded = [_load_mask(m, size, f"mask of {names[mask_paths.index(m)]}", args.content, stretch)
                  for m in order]
        shapes = {m.shape for m in loaded}
        if len(shapes) > 1:
            common = max(shapes)
            loaded = [np.asarray(Gu.resize_mask(m, common)) for m in loaded]
        regions = np.stack(loaded)
        of = [order.index(m) if m else len(order) for m in mask_paths]
        if len(order) in of:  # styles without a mask: the rest of the image
            regions = np.concatenate([regions, np.clip(1.0 - regions.sum(0), 0.0, 1.0)[None]])
        labels = [f"{([*order, 'the rest'])[r]} <- "
                  + ", ".join(n for n, rk in zip(names, of, strict=True) if rk == r)
                  for r in range(len(regions))]
    style_masks: list[Any] = []
    if args.style_regions:
        if len(args.style_regions) != len(styles):
            raise CliError(f"--style-regions: expected {len(styles)} masks (one per style image, "
                           f"'-' for all of it), got {len(args.style_regions)}")
        style_masks = [None if m == "-" else _load_mask(m, max(hw), f"--style-regions {m}", s, stretch)
                       for m, hw, s in zip(args.style_regions, style_hws, styles, strict=True)]
    content = (_load_mask(args.content_mask, size, "--content-mask", args.content, stretch)
               if args.content_mask else None)
    if regions is None and not style_masks and content is None:
        return None, None
    g = Gu.Guides(regions=regions, region_of=None if of is None else tuple(of),
                  style_masks=tuple(style_masks), content=content,
                  stretch=stretch)
    try:
        for hw in scale_sizes(*content_hw, config):
            Gu.at_layers(g, hw, style_sizes(content_hw, style_hws, hw), config, names)
    except ValueError as e:
        raise CliError(str(e).replace("Guides(stretch=True)", "in the library: Guides(stretch=True)")
                       ) from None
    return g, ("nst_jax: regions: " + "; ".join(f"{i + 1} = {t}" for i, t in enumerate(labels))
               if labels else None)
