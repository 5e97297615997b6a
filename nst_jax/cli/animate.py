"""[I/O] ``--animate OUT.gif|OUT.mp4``: the run's iterates, every N steps (from the
engine's progress events), assembled into an animation when the run ends (or is
interrupted). GIFs by Pillow; MP4 (and the other video formats) by the video extra's
encoder (:func:`nst_jax.videoio.write_video`). Written atomically, never over a file
without ``--overwrite``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nst_jax.cli.common import CliError

#: Frames per second of the animation (each frame is ``--animate-every`` steps).
FPS = 10.0
#: The last frame is held this many frames, so a looping GIF shows the result.
HOLD = 10


def check_animation(path: str) -> None:
    """Refuse, before the run, an extension nothing here can write, or a video format
    without the video extra (PyAV)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return
    from nst_jax import videoio

    if suffix not in videoio.FORMATS:
        raise CliError(f"--animate {path}: cannot write {suffix or 'a file without an extension'}; "
                       f"use .gif or one of {', '.join(videoio.FORMATS)}")
    try:
        videoio.output_codec(path)
    except videoio.VideoError as e:
        raise CliError(f"--animate {path}: {e}") from None


class Recorder:
    """The frames of an animation: ``add`` every ``every`` steps, ``write`` at the end."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every
        self.frames: list[np.ndarray] = []
        self.steps: list[int] = []

    def add(self, step: int, image: Any) -> None:
        """Keep ``image`` (``(H, W, 3)`` in [0, 1]) as uint8 if ``step`` is due and new."""
        if (step % self.every == 0 or not self.steps) and step not in self.steps:
            self.frames.append(np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8))
            self.steps.append(step)

    def write(self, final: Any, overwrite: bool) -> Path:
        """The frames, then ``final`` (the saved result) held :data:`HOLD` frames."""
        last = np.clip(np.round(np.asarray(final) * 255), 0, 255).astype(np.uint8)
        if self.path.suffix.lower() == ".gif":  # the last frame shown HOLD times as long
            from PIL import Image

            from nst_jax.files import atomic_path

            ims = [Image.fromarray(f) for f in [*self.frames, last]]
            durations = [round(1000 / FPS)] * len(self.frames) + [round(HOLD * 1000 / FPS)]
            with atomic_path(self.path, overwrite=overwrite) as tmp:
                ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=durations,
                            loop=0)
            return self.path
        from nst_jax import videoio

        frames = [*self.frames, *([last] * HOLD)]  # a video has one frame rate: repeat it
        return videoio.write_video(self.path, (f / 255.0 for f in frames), FPS, overwrite=overwrite)


__all__ = ["FPS", "HOLD", "Recorder", "check_animation"]
