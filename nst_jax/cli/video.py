"""[I/O] ``nst-jax video``: a clip without flicker (Ruder, Dosovitskiy & Brox 2016).

Finished frames go into a work folder (``OUT.frames/``, 16-bit PNGs) as they finish,
so Ctrl-C keeps them and ``--resume`` continues after the last one; the video is
encoded at the end into a temporary file renamed over ``OUT`` (audio copied), and the
work folder is then removed. A folder output is the frames themselves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nst_jax.cli.common import (
    EXIT_OK,
    MAX_WEIGHT,
    CliError,
    Interrupts,
    devices_arg,
    fmt_time,
    integer,
    nonneg_float,
    positive_float,
    positive_int,
    ranged,
    refuse_overlap,
)
from nst_jax.cli.inputs import add_common_args, prepare
from nst_jax.cli.video_model import add_model_flags, run_model

DESCRIPTION = """Stylize a video (or a folder of frames) without flicker, after Ruder et al. 2016:
each frame starts from the previous stylized frame warped by optical flow (OpenCV
DIS), and a temporal cost holds it there where the flow is reliable. The first frame
gets --iters-first iterations, every later one --iters. One compiled program serves
every frame.

Example:
  {prog} clip.mp4 painting.jpg -o out/clip.mp4 --size 256 --max-frames 48
"""

NOT_RESULT = ("output", "resume", "overwrite", "quiet", "report_every", "device", "weights", "func",
              "tile", "bit_depth", "devices")
PARTIAL = "partial.ckpt"  # the interrupted frame's state, in the work folder
RECENT = "recent.npz"  # the last --long-term outputs exactly (the PNGs are rounded to 16 bits)


class _FramesKept(CliError):
    """The frames are finished but the video could not be encoded: they stay."""


class _Stop(Exception):
    """Ctrl-C/SIGTERM during a frame: leave that frame unfinished."""


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = DESCRIPTION.format(prog=ap.prog)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("input", metavar="IN",
                    help="a video file (anything FFmpeg decodes) or a folder of frames")
    ap.add_argument("style", nargs="*", help="style image(s); several are blended (--style-weights); "
                    "none with --model")
    ap.add_argument("-o", "--output", required=True,
                    help="OUT.mp4 / .mov / .mkv / .webm / .gif, or a folder (frames as PNGs)")
    v = ap.add_argument_group("video (Ruder et al. 2016)")
    v.add_argument("--iters-first", type=ranged(positive_int, hi=10**8), default=300, metavar="N",
                   help="iterations of the first frame (default: 300); later frames: --iters")
    v.add_argument("--temporal-weight", type=ranged(nonneg_float, hi=MAX_WEIGHT), default=2e6, metavar="L",
                   help="lambda_t of the temporal cost sum(c (x - warp(x_prev))^2) / D (default: 2e6; "
                        "0: warm start only)")
    v.add_argument("--long-term", type=ranged(positive_int, hi=1000), default=1, metavar="K",
                   help="hold each frame to the K previous ones (long-term consistency; default: 1)")
    v.add_argument("--independent", action="store_true",
                   help="the flickering baseline: every frame on its own, --iters-first each")
    v.add_argument("--max-frames", type=ranged(positive_int, hi=10**8), default=None, metavar="N",
                   help="stylize at most N frames")
    v.add_argument("--start", type=ranged(integer, 0, 10**8), default=0, metavar="N",
                   help="first input frame (default: 0)")
    v.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate of the output (default: the input's; 25 for folders)")
    v.add_argument("--resume", action="store_true",
                   help="continue an interrupted run (same settings): the frame it was in, from "
                        "where it stopped, then the rest")
    v.add_argument("--devices", type=devices_arg, default=1, metavar="N|all",
                   help="each frame over N devices (or all): split by rows, or with --tile its "
                        "tiles spread over them (default: 1)")
    add_model_flags(ap)
    add_common_args(ap)
    ap.set_defaults(size=256, iters=100)
    return ap


def _work_folder(out: Path) -> Path:
    from nst_jax.videoio import is_frames_dir

    return out if is_frames_dir(out) else out.with_name(out.name + ".frames")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    s = {k: v for k, v in vars(args).items() if k not in NOT_RESULT}
    s["input_sha256"] = hashlib.sha256(Path(args.input).read_bytes()).hexdigest() \
        if Path(args.input).is_file() else None
    return json.loads(json.dumps(s, default=str))


def _done_frames(work: Path) -> int:
    n = 0
    while (work / f"{n:06d}.png").exists():
        n += 1
    return n


def run(args: argparse.Namespace) -> int:
    """The ``video`` subcommand; returns the exit code."""
    from nst_jax import videoio as V

    if args.model:
        if args.style:
            raise CliError("--model: the model holds the style; give no STYLE images")
        return run_model(args)
    if not args.style:
        raise CliError("expected style image(s) after IN (or --model MODEL)")
    t_start = time.perf_counter()
    out = Path(args.output)
    work = _work_folder(out)
    refuse_overlap([("output", out), ("work folder", work), ("sidecar", _sidecar(out))],
                   [("input", Path(args.input)), *(("style image", Path(s)) for s in args.style),
                    *([("weights file", Path(args.weights))] if args.weights else [])])
    if args.start < 0:
        raise CliError(f"--start: expected a frame index >= 0, got {args.start}")
    try:
        info = V.probe(args.input)
        V.output_codec(out)
        fps = V.check_fps(args.fps or info["fps"], out)
        # Every frame to stylise is read (headers, or packets decoded) before any work:
        # a truncated stream or a size change is refused now, not after hours.
        n_total = V.scan(args.input, start=args.start, max_frames=args.max_frames)
    except V.VideoError as e:
        raise CliError(str(e)) from None
    if args.long_term > n_total:
        raise CliError(f"--long-term {args.long_term}: larger than the {n_total} frame(s) to stylize")
    settings = _settings(args)
    done = 0
    if args.resume:
        state = work / "run.json"
        if not state.exists():
            raise CliError(f"--resume: no interrupted run in {work}")
        saved = json.loads(state.read_text())
        diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if diff:
            raise CliError(f"--resume: settings differ from the interrupted run's: {', '.join(diff)}")
        done = _done_frames(work)
    else:
        if out.exists() and not args.overwrite and not V.is_frames_dir(out):
            raise CliError(f"{out} exists; pass --overwrite to replace it")
        if work.exists() and any(work.iterdir()) and not args.overwrite:
            raise CliError(f"{work} exists and is not empty; pass --overwrite (or --resume)")
    try:
        first = next(iter(V.read_frames(args.input, start=args.start, max_frames=1, size=args.size)))
    except V.VideoError as e:
        raise CliError(str(e)) from None
    from nst_jax.cli.video_masks import mask_sequences

    seqs = mask_sequences(args, n_total)
    tmp = tempfile.TemporaryDirectory(prefix="nst_jax-video-")  # the first frame, for the checks
    try:
        return _prepared(args, info, work, out, done, n_total, fps, t_start, first, settings, seqs, tmp.name)
    finally:
        tmp.cleanup()


def _prepared(args: argparse.Namespace, info: dict, work: Path, out: Path, done: int, n_total: int,
              fps: float, t_start: float, first: Any, settings: dict, seqs: Any, tmp: str) -> int:
    """Settings checked against the first frame (and its masks), then the frames."""
    from nst_jax import image as I
    from nst_jax.cli.video_masks import guides_for

    for flag, v in (("--auto-regions", args.auto_regions), ("--smooth", args.smooth)):
        if v:  # per-frame clusters (and per-frame smoothing) would flicker: not offered for video
            raise CliError(f"{flag} is for still images (nst-jax stylize, batch); a video takes "
                           "--photo, with STYLE:MASK regions (a mask or a folder of per-frame masks)")
    args.content = str(Path(tmp) / f"{Path(args.input).stem or 'frames'}.png")
    I.save_image(args.content, first, sidecar=False)
    pr = prepare(args, args.report_every)
    if seqs is not None:  # masks per frame (read as each frame starts)
        pr.guides = guides_for(args, seqs, pr)
    pr.meta["settings"]["input"] = args.input
    made = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        for f in [*work.glob("[0-9]*.png"), work / PARTIAL, work / RECENT]:
            f.unlink(missing_ok=True)
        (work / "run.json").write_text(json.dumps(settings, indent=1))
    try:
        return _frames(args, pr, info, work, out, done, n_total, fps, t_start)
    except _FramesKept:
        raise
    except Exception:
        _remove_new_frames(work, done, made, keep_state=args.resume)
        raise


def _recent_items(recent: dict[int, Any], t: int, K: int) -> list[tuple[int, Any]]:
    """The outputs among ``recent`` that frame ``t + 1`` and later still look back at."""
    return [(j, o) for j, o in recent.items() if j > t - K]


def _write_recent(work: Path, recent: dict[int, Any]) -> None:
    """The last outputs as float32 (atomically): a resumed run holds its next frame to
    exactly what the uninterrupted run would (not to the 16-bit PNGs)."""
    import io

    import numpy as np

    from nst_jax import files

    buf = io.BytesIO()
    np.savez(buf, **{f"f{j}": np.asarray(o, np.float32) for j, o in recent.items()})
    files.write_bytes(work / RECENT, buf.getvalue(), overwrite=True)


def _read_recent(work: Path) -> dict[int, Any]:
    """``{frame: output}`` from :func:`_write_recent` (empty when absent or unreadable:
    then the PNGs are used)."""
    import numpy as np

    try:
        with np.load(work / RECENT) as z:
            return {int(k[1:]): z[k] for k in z.files}
    except (OSError, ValueError):
        return {}


def _save_partial(work: Path, frame: int, p: Any) -> None:
    """Keep the interrupted frame's engine snapshot (``--resume`` continues it)."""
    from nst_jax.checkpoint import save_checkpoint

    if p is not None and p.snapshot is not None and not p.finished:
        save_checkpoint(work / PARTIAL, p.snapshot, {"frame": frame})


def _partial_state(work: Path, done: int) -> dict[str, Any] | None:
    """The snapshot of frame ``done`` if an interrupted run left one (else None)."""
    from nst_jax.checkpoint import CheckpointError, load_checkpoint

    if not (work / PARTIAL).exists():
        return None
    try:
        snap, meta = load_checkpoint(work / PARTIAL)
    except CheckpointError as e:
        raise CliError(f"--resume: {e}") from None
    return snap if meta.get("frame") == done else None


def _sidecar(out: Path) -> Path:
    from nst_jax.videoio import is_frames_dir

    return out / "meta.json" if is_frames_dir(out) else out.with_name(out.name + ".json")


def _remove_new_frames(work: Path, done: int, made: bool, *, keep_state: bool) -> None:
    """A failed run leaves nothing it made: the frames it wrote (from ``done`` on), its
    ``run.json`` (unless resuming an earlier run's), and the work folder if it made it."""
    if not work.is_dir():
        return
    t = done
    while (f := work / f"{t:06d}.png").exists():
        f.unlink()
        t += 1
    if not keep_state:
        (work / "run.json").unlink(missing_ok=True)
        (work / PARTIAL).unlink(missing_ok=True)
        (work / RECENT).unlink(missing_ok=True)
    if made and not any(work.iterdir()):
        work.rmdir()


def _frames(args: argparse.Namespace, pr: Any, info: dict, work: Path, out: Path, done: int,
            n_total: int, fps: float, t_start: float) -> int:
    import jax

    from nst_jax import image as I
    from nst_jax import videoio as V
    from nst_jax.layout import Layout
    from nst_jax.video import iterate_video

    K = args.long_term
    frames = V.read_frames(args.input, start=args.start + max(0, done - K),
                           max_frames=n_total - max(0, done - K), size=args.size)
    earlier = []
    exact = _read_recent(work) if done else {}
    try:
        for j in range(max(0, done - K), done):  # the inputs and outputs a resumed run looks back at
            out_j = exact[j] if j in exact else I.load_image(work / f"{j:06d}.png")
            earlier.insert(0, (next(frames), out_j))
    except (StopIteration, I.ImageError, V.VideoError) as e:
        raise CliError(f"--resume: cannot read back frame {j}: {e}") from None
    t = done
    recent = {j: o for j, (_, o) in zip(range(done - 1, -1, -1), earlier, strict=False)}
    resume = _partial_state(work, done) if args.resume else None
    with Interrupts() as stop:
        def progress(i: int, p: Any) -> None:
            if stop.requested:
                _save_partial(work, t, p)
                raise _Stop
        try:
            for frame_out, last in iterate_video(
                    frames, pr.styles, pr.params, pr.spec,
                    config=pr.config.replace(iterations=args.iters_first),
                    iters=args.iters_first if args.independent else args.iters,
                    temporal_weight=0.0 if args.independent else args.temporal_weight,
                    long_term=K, warm_start=not args.independent, key=jax.random.key(args.seed),
                    style_blend=pr.blend, earlier=earlier, callback=progress,
                    layout=pr.layout or Layout(),
                    guides=(lambda i: pr.guides(done + i)) if callable(pr.guides) else pr.guides,
                    resume=resume, snapshots=True):
                I.save_image(work / f"{t:06d}.png", frame_out, sidecar=False, bit_depth=16,
                             overwrite=True)
                recent = {**{j: o for j, o in _recent_items(recent, t, K)}, t: frame_out}
                _write_recent(work, recent)
                (work / PARTIAL).unlink(missing_ok=True)
                t += 1
                if not args.quiet:
                    c = last.costs
                    print(f"frame {t}/{n_total}: {last.step} "
                          f"iterations, content {c['content']:.4g} style {c['style']:.4g} temporal "
                          f"{c.get('temporal', 0):.3g}, {fmt_time(time.perf_counter() - t_start)} elapsed",
                          file=sys.stderr, flush=True)
                if stop.requested:
                    raise _Stop
        except _Stop:
            part = f" and frame {t + 1}'s state so far" if (work / PARTIAL).exists() else ""
            print(f"interrupted ({stop.name}): {t} finished frame(s){part} kept in {work}; run the "
                  "same command with --resume to continue", file=sys.stderr)
            return stop.exit_code
        except V.VideoError as e:
            raise CliError(str(e)) from None
    if K > t:
        raise CliError(f"--long-term {K}: larger than the {t} frame(s)")
    if not V.is_frames_dir(out):
        files = [work / f"{i:06d}.png" for i in range(t)]
        try:
            V.write_video(out, (I.load_image(f) for f in files), fps, audio_from=args.input,
                          start=args.start, n_frames=t, overwrite=True)
        except (OSError, V.VideoError) as e:
            raise _FramesKept(f"{out} not written ({e}); the frames are in {work}") from None
        shutil.rmtree(work)
    _sidecar(out).write_text(json.dumps({**pr.meta, "frames": t, "fps": fps}, indent=1, default=str))
    print(f"done: wrote {out} ({t} frames at {fps:g} fps) in {fmt_time(time.perf_counter() - t_start)}",
          file=sys.stderr)
    return EXIT_OK


__all__ = ["fill_parser", "run"]
