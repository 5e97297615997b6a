"""[I/O] Reading and writing video, and optical flow (the ``video`` extra).

Video goes through PyAV (``av`` on PyPI), whose wheels ship FFmpeg itself (libx264,
libvpx, AAC...): no system FFmpeg and no subprocess, frames decoded straight into
NumPy, and audio packets can be copied into the output without re-encoding.
imageio-ffmpeg pipes raw frames to an ffmpeg executable, which makes copying the
audio stream a second ffmpeg call. Optical flow is OpenCV's DIS
(``opencv-python-headless``): fast on CPU and accurate enough for consistency checks.

A "video" may also be a folder of frames (images, sorted by name), read and written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

#: Output suffix -> (container, video codecs in order of preference).
FORMATS = {
    ".mp4": ("mp4", ("libx264", "h264", "mpeg4")),
    ".mov": ("mov", ("libx264", "h264", "mpeg4")),
    ".mkv": ("matroska", ("libx264", "h264", "mpeg4")),
    ".webm": ("webm", ("libvpx-vp9", "libvpx")),
    ".gif": ("gif", ("gif",)),
}
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


#: Frame rates each output can hold, as ``(lowest, highest)`` frames per second. A GIF
#: stores each frame's delay in whole centiseconds (1 to 65535: 100/65535 to 100 fps);
#: the other containers get the rate as a fraction with a denominator of at most 1001
#: (:func:`write_video`), so 1/1000 fps is the slowest that stays exact to 0.1%, and
#: 1000 fps the fastest we write (H.264/VP9 levels allow far less at large sizes).
FPS_RANGE = {".gif": (100 / 65535, 100.0), "video": (1 / 1000, 1000.0)}


class VideoError(ValueError):
    """A video (or folder of frames) cannot be read, or an output cannot be written."""


def check_fps(fps: float, path: str | os.PathLike) -> float:
    """``fps`` if the output ``path`` (a video or a folder of frames) can hold it.

    Raises:
      VideoError: naming the range the container allows.
    """
    suffix = Path(path).suffix.lower()
    lo, hi = FPS_RANGE[".gif" if suffix == ".gif" else "video"]
    if not (lo <= fps <= hi):
        what = "a GIF (delays of 1 to 65535 centiseconds)" if suffix == ".gif" else "this output"
        raise VideoError(f"frame rate {fps:g} (--fps, or the input's): {what} holds {lo:.4g} to "
                         f"{hi:g} frames per second")
    return fps


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install 'nst-jax[video]' (or pip install av)") from None
    return av


def is_frames_dir(path: str | os.PathLike) -> bool:
    """A folder (or a path without a suffix: a folder to be written)."""
    p = Path(path)
    return p.is_dir() or (not p.exists() and p.suffix == "")


def output_codec(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(container, codec)`` for a video output (``None``: a folder of frames); checked
    before any work, so an extension the encoder lacks is refused at once."""
    if is_frames_dir(path):
        return None
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise VideoError(f"{path}: cannot write {suffix or 'this'} video; use one of "
                         f"{', '.join(FORMATS)} or a folder of frames")
    av = _av()
    fmt, codecs = FORMATS[suffix]
    for c in codecs:
        try:
            av.codec.Codec(c, "w")
            return fmt, c
        except Exception:  # not in this FFmpeg build
            continue
    raise VideoError(f"{path}: this FFmpeg build has no encoder for {suffix} ({', '.join(codecs)})")


def probe(path: str | os.PathLike) -> dict[str, Any]:
    """``{"frames": n or None, "fps": float, "size": (H, W), "audio": bool}`` from the
    headers (a folder: its frame files)."""
    p = Path(path)
    if not p.exists():
        raise VideoError(f"video not found: {p}")
    if p.is_dir():
        files = _frame_files(p)
        from nst_jax.image import image_shape

        return {"frames": len(files), "fps": 25.0, "size": image_shape(files[0]), "audio": False}
    av = _av()
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise VideoError(f"{p}: no video stream")
            v = c.streams.video[0]
            return {"frames": v.frames or None, "fps": float(v.average_rate or 25),
                    "size": (v.codec_context.height, v.codec_context.width),
                    "audio": bool(c.streams.audio)}
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(f"cannot decode video {p}: {e}") from None


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(q for q in folder.iterdir() if q.suffix.lower() in FRAME_SUFFIXES and q.is_file())
    if not files:
        raise VideoError(f"{folder}: zero frames (no images in this folder)")
    return files


def read_frames(path: str | os.PathLike, *, start: int = 0, max_frames: int | None = None,
                size: int | None = None) -> Iterator[np.ndarray]:
    """Frames ``start, start+1, ...`` as ``(H, W, 3)`` float32 RGB in [0, 1], the longest
    side resized to ``size``. Raises :class:`VideoError` for a stream that cannot be
    decoded, zero frames, or frames of changing size."""
    from nst_jax.image import ImageError, load_image

    p = Path(path)
    shape = None
    n = 0

    def check(frame: np.ndarray, i: int) -> np.ndarray:
        nonlocal shape
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise VideoError(f"{p}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                             f"{shape[1]}x{shape[0]} (frames of changing size)")
        return frame

    if p.is_dir():
        for i, f in enumerate(_frame_files(p)[start:]):
            if max_frames is not None and n >= max_frames:
                return
            try:
                yield check(load_image(f, size), start + i)
            except ImageError as e:
                raise VideoError(str(e)) from None
            n += 1
    else:
        av = _av()
        try:
            c = av.open(str(p))
        except Exception as e:
            raise VideoError(f"cannot decode video {p}: {e}") from None
        with c:
            if not c.streams.video:
                raise VideoError(f"{p}: no video stream")
            try:
                for i, fr in enumerate(c.decode(video=0)):
                    if i < start:
                        continue
                    if max_frames is not None and n >= max_frames:
                        return
                    yield check(_resized(fr.to_ndarray(format="rgb24"), size), i)
                    n += 1
            except VideoError:
                raise
            except Exception as e:
                raise VideoError(f"cannot decode video {p} (after {n} frames): {e}") from None
    if n == 0:
        raise VideoError(f"{p}: zero frames" + (f" from frame {start}" if start else ""))


def scan(path: str | os.PathLike, *, start: int = 0, max_frames: int | None = None) -> int:
    """Check, before any work, that frames ``start ...`` (at most ``max_frames``) can all
    be read and have one size; returns their count.

    A folder: every frame file's header (nothing decoded). A video file: its packets are
    decoded (no colour conversion, no resizing), which finds a truncated or corrupt
    stream and a size change at a small fraction of the cost of stylising.

    Raises:
      VideoError: zero frames, an unreadable frame, or frames of changing size (naming it).
    """
    p = Path(path)
    sizes: list[tuple[int, int]] = []

    def add(hw: tuple[int, int], i: int) -> None:
        if sizes and hw != sizes[0]:
            raise VideoError(f"{p}: frame {i} is {hw[1]}x{hw[0]}, frame {start} is "
                             f"{sizes[0][1]}x{sizes[0][0]} (frames of changing size); nothing "
                             "was stylised")
        sizes.append(hw)

    if p.is_dir():
        from nst_jax.image import ImageError, image_shape

        files = _frame_files(p)[start:]
        for i, f in enumerate(files[:max_frames] if max_frames is not None else files):
            try:
                add(tuple(image_shape(f)), start + i)
            except ImageError as e:
                raise VideoError(f"{e}; nothing was stylised") from None
    else:
        av = _av()
        try:
            with av.open(str(p)) as c:
                if not c.streams.video:
                    raise VideoError(f"{p}: no video stream")
                promised = c.streams.video[0].frames or None  # from the header, when it says
                for i, fr in enumerate(c.decode(video=0)):
                    if max_frames is not None and i >= start + max_frames:
                        break
                    if i >= start:
                        add((fr.height, fr.width), i)
            want = None if promised is None else max(0, promised - start)
            if want is not None and max_frames is not None:
                want = min(want, max_frames)
            if want and len(sizes) < want:
                raise VideoError(f"{p}: its header promises {promised} frames, but only "
                                 f"{start + len(sizes)} decode (a truncated file?); nothing was "
                                 f"stylised (--max-frames {len(sizes)} stylises the readable ones)")
        except VideoError:
            raise
        except Exception as e:
            raise VideoError(f"cannot decode video {p} (after {start + len(sizes)} frames): {e}; "
                             "nothing was stylised") from None
    if not sizes:
        raise VideoError(f"{p}: zero frames" + (f" from frame {start}" if start else ""))
    return len(sizes)


def _resized(rgb: np.ndarray, size: int | None) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    if size is not None and max(h, w) != size:
        s = size / max(h, w)
        rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                     Image.Resampling.LANCZOS))
    return rgb.astype(np.float32) / 255.0


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, *,
                audio_from: str | os.PathLike | None = None, start: int = 0,
                n_frames: int | None = None, overwrite: bool = False) -> Path:
    """Encode ``(H, W, 3)`` frames in [0, 1] into ``path`` atomically (a temporary file in
    the same folder, renamed at the end), copying the audio of ``audio_from`` (the part
    from input frame ``start`` on, ``n_frames`` frames long) without re-encoding."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise VideoError(f"{p} exists; pass --overwrite to replace it")
    fmt, codec = output_codec(p)
    check_fps(fps, p)
    av = _av()
    rate = Fraction(fps).limit_denominator(1001)
    from nst_jax.files import atomic_path

    # The temp file follows the umask like every other output (files.atomic_path).
    with atomic_path(p, overwrite=overwrite) as tmp:
        with av.open(str(tmp), "w", format=fmt) as out:
            stream = None
            for frame in frames:
                rgb = np.clip(np.round(np.asarray(frame) * 255), 0, 255).astype(np.uint8)
                if stream is None:
                    stream = out.add_stream(codec, rate=rate)
                    stream.width, stream.height = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2
                    stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
                    if codec in ("libx264",):
                        stream.options = {"crf": "18"}
                    audio = _audio_copy(av, out, audio_from, fmt)
                rgb = rgb[: stream.height, : stream.width]
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
            if stream is None:
                raise VideoError(f"{p}: zero frames to write")
            for packet in stream.encode():
                out.mux(packet)
            if audio is not None:
                length = None if n_frames is None else n_frames / float(fps)
                _mux_audio(out, audio, start / float(fps), length)
    return p


def _audio_copy(av: Any, out: Any, src: Any, fmt: str) -> Any:
    """``(input container, its audio stream, the output stream)`` to copy, or None."""
    if src is None or fmt == "gif" or Path(src).is_dir():
        return None
    inp = av.open(str(src))
    if not inp.streams.audio:
        inp.close()
        return None
    a = inp.streams.audio[0]
    try:
        o = out.add_stream_from_template(a)
    except Exception:  # the container cannot hold this codec: no audio rather than no video
        inp.close()
        return None
    return inp, a, o


def _mux_audio(out: Any, audio: Any, t0: float, length: float | None) -> None:
    inp, a, o = audio
    with inp:
        for packet in inp.demux(a):
            if packet.dts is None or packet.pts is None:
                continue
            t = float(packet.pts * a.time_base)
            if t < t0 or (length is not None and t >= t0 + length):
                continue
            packet.pts -= round(t0 / a.time_base)
            packet.dts -= round(t0 / a.time_base)
            packet.stream = o
            out.mux(packet)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Optical flow from image ``a`` to ``b`` (``(H, W, 3)`` in [0, 1]): ``(H, W, 2)``
    ``(dx, dy)`` with ``a[y, x] ~ b[y + dy, x + dx]``; OpenCV's DIS, medium preset."""
    try:
        import cv2
    except ImportError:
        raise VideoError("optical flow needs OpenCV: pip install 'nst-jax[video]' "
                         "(or pip install opencv-python-headless)") from None

    def grey(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return np.clip(np.round((0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]) * 255),
                       0, 255).astype(np.uint8)

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(grey(a), grey(b), None).astype(np.float32)


__all__ = ["FORMATS", "VideoError", "dis_flow", "is_frames_dir", "output_codec", "probe",
           "read_frames", "write_video"]
