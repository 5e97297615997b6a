#!/usr/bin/env python3
"""Make the region masks of the bundled rocket photo (deterministic; CC0 with this script).

examples/mask_rocket_sky.png: white where content_rocket.jpg shows sky, black on the
ground, the rocket and the towers. A pixel is sky when it is clearly blue
(``B > 1.5 R + 8`` and ``B > R + 12``, on 0-255 values): the dusk sky is, the
structures and the lit ground are not; a 5x5 median filter removes specks.

examples/labels_rocket.png: the same split as a colour-coded image for
``--mask-colors`` (blue sky first from the top left, then orange ground).

    python examples/make_masks.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
SKY, GROUND = (40, 90, 220), (240, 140, 30)


def sky_mask(rgb: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8, 255 on sky pixels of an ``(H, W, 3)`` uint8 photo."""
    r, b = rgb[..., 0].astype(np.int32), rgb[..., 2].astype(np.int32)
    sky = (2 * b > 3 * r + 16) & (b > r + 12)
    return np.asarray(Image.fromarray((sky * 255).astype(np.uint8)).filter(ImageFilter.MedianFilter(5)))


def main() -> None:
    rgb = np.asarray(Image.open(HERE / "content_rocket.jpg").convert("RGB"))
    m = sky_mask(rgb)
    Image.fromarray(m).save(HERE / "mask_rocket_sky.png", optimize=True)
    labels = np.where(m[..., None] > 127, np.array(SKY, np.uint8), np.array(GROUND, np.uint8))
    Image.fromarray(labels.astype(np.uint8)).save(HERE / "labels_rocket.png", optimize=True)
    print(f"sky: {np.mean(m > 127):.1%} of {m.shape[1]}x{m.shape[0]} pixels")


if __name__ == "__main__":
    main()
