"""[I/O] ``nst-jax stylize``: one image, with progress, frames, checkpoints and resume."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from nst_jax import files
from nst_jax.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Interrupts,
    ProgressBar,
    add_distributed,
    check_outputs,
    devices_arg,
    fmt_time,
    positive_int,
    ranged,
    refuse_overlap,
    save_with_fallback,
    select_device,
    sha256_of,
    start_distributed,
)
from nst_jax.cli.inputs import add_common_args, add_inputs, prepare, report_interval
from nst_jax.cli.photo import region_paths, smooth_result, write_auto_regions

DESCRIPTION = """Paint CONTENT in the style of STYLE (Gatys, Ecker & Bethge).

Example:
  {prog} photo.jpg painting.jpg --size 512 --iters 300 -o out/photo-painting.png

The cost is J(G) = alpha * J_content(C, G) + beta * J_style(S, G) + tv_weight * TV(G);
G starts from the content image plus noise and Adam updates its pixels (in [0, 1]).
Exit codes: 0 done, 1 run-time failure (non-finite cost, a write that failed),
2 bad input, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an interrupted run
saves its current image.
"""

#: Settings that do not change the result (left out of the resume comparison).
NOT_RESULT = ("output", "resume", "checkpoint_every", "save_every", "overwrite", "quiet",
              "report_every", "device", "weights", "func",
              "tile",  # exact: a run may resume with other tiles (or none)
              "bit_depth", "devices", "distributed", "coordinator", "num_processes",
              "process_id")


def fill_parser(ap: argparse.ArgumentParser, *, texture: bool = False) -> argparse.ArgumentParser:
    """The flags of ``stylize``; with ``texture``, of ``nst-jax texture`` (no CONTENT; its
    own ``--size``, :mod:`nst_jax.cli.texture`)."""
    add_inputs(ap, DESCRIPTION,
               "output .png or .jpg (default: out/CONTENT-STYLE.png, numbered if taken)",
               content=not texture)
    add_common_args(ap, skip=("--size",) if texture else ())
    ap.add_argument("--save-every", type=ranged(positive_int, hi=10**8), default=None, metavar="N",
                    help="also write every N-th iterate as OUT.NNNNNN.png (default: off)")
    ap.add_argument("--checkpoint-every", type=ranged(positive_int, hi=10**8), default=None, metavar="N",
                    help="save a resumable checkpoint OUT.ckpt every N iterations and on "
                         "Ctrl-C/SIGTERM (default: off)")
    ap.add_argument("--resume", default=None, metavar="CKPT",
                    help="continue the run saved in CKPT (give the same inputs and settings)")
    ap.add_argument("--devices", type=devices_arg, default=1, metavar="N|all",
                    help="split the image along its height over N devices, or all of them (every "
                         "host's, with --distributed); XLA exchanges the halos. With --tile: its "
                         "tiles spread over them (default: 1)")
    ap.add_argument("--animate", default=None, metavar="OUT.gif|OUT.mp4",
                    help="also write an animation of the run: the iterate every --animate-every "
                         "steps, ending on the result (.gif, or .mp4/.webm/.mov/.mkv with the video "
                         "extra) (default: off)")
    ap.add_argument("--animate-every", type=ranged(positive_int, hi=10**8), default=None, metavar="N",
                    help="steps between the animation's frames (default: --report-every)")
    add_distributed(ap)
    return ap


def frame_path(out: Path, step: int) -> Path:
    return out.with_name(f"{out.stem}.{step:06d}{out.suffix}")


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def planned_outputs(args: argparse.Namespace, out: Path) -> list[Path]:
    """Every name the run may write: the image and its sidecar, the last frame (the
    longest name) with its sidecar, the checkpoint (unless it is the one resumed from)."""
    from nst_jax.image import sidecar_of

    paths = [out, sidecar_of(out)]
    if getattr(args, "auto_regions", None):
        paths += region_paths(out, args.auto_regions)
    if args.save_every:
        last = frame_path(out, max(args.iters * args.scales, 999999))
        paths += [last, sidecar_of(last)]
    if args.animate:
        paths.append(Path(args.animate))
    ckpt = checkpoint_path(out)
    resuming_it = args.resume and Path(args.resume).resolve() == ckpt.resolve()
    if args.checkpoint_every and not resuming_it:
        paths.append(ckpt)
    return paths


def _earlier_frames(out: Path) -> list[Path]:
    import re

    pat = re.compile(re.escape(out.stem) + r"\.\d{6}" + re.escape(out.suffix) + r"(\.json)?$")
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.iterdir() if pat.fullmatch(p.name))


def _free_default(args: argparse.Namespace) -> Path:
    """``out/CONTENT-STYLE.png``, numbered if any file the run would write is taken."""
    stem = f"{Path(args.content).stem}-{Path(args.style[0]).stem}"
    base = Path("out") / f"{stem}.png"
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(100000):
        cand = files.numbered(base, i)
        taken = [p for p in planned_outputs(args, cand) if p.exists()]
        if not taken and not (args.save_every and _earlier_frames(cand)):
            return cand
    raise CliError(f"no free output name like {base} in out/")


#: Settings added after checkpoints of earlier versions were written, with the value that
#: such a checkpoint ran with (absent from it: the behaviour it had, not a difference).
ADDED_SETTINGS: dict[str, Any] = {"lbfgs_linesearch": "zoom"}


def _inputs_digest(args: argparse.Namespace) -> dict[str, Any]:
    masks = [*(args.style_masks or []), args.mask_colors, *(args.style_regions or []),
             args.content_mask]
    digest = {"content": sha256_of(args.content), "styles": [sha256_of(s) for s in args.style]}
    if any(m and m != "-" for m in masks):
        digest["masks"] = [sha256_of(m) if m and m != "-" else None for m in masks]
    return digest


def _check_resume(args: argparse.Namespace, run_settings: dict[str, Any]) -> dict[str, Any]:
    from nst_jax.checkpoint import CheckpointError, load_checkpoint

    try:
        resume, saved = load_checkpoint(args.resume)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    now, then = run_settings.pop("inputs"), saved.pop("inputs", None)
    if then is not None and then != now:
        which = [n for n, a, b in (("content", then.get("content"), now["content"]),
                                   ("style", then.get("styles"), now["styles"]),
                                   ("mask", then.get("masks"), now.get("masks"))) if a != b]
        raise CliError(f"--resume {args.resume}: the {' and '.join(which)} image file(s) changed "
                       "since the checkpoint was written (sha256 differs)")
    saved = {**{k: v for k, v in ADDED_SETTINGS.items() if k not in saved}, **saved}
    diff = sorted(k for k in set(saved) | set(run_settings)
                  if saved.get(k) != json.loads(json.dumps(run_settings.get(k), default=str)))
    if diff:
        raise CliError(f"--resume {args.resume}: settings differ from the checkpoint's: "
                       + ", ".join(f"{k} (checkpoint {saved.get(k)!r}, now "
                                   f"{run_settings.get(k)!r})" for k in diff))
    run_settings["inputs"] = now
    return resume


def _model_init_path(args: argparse.Namespace) -> str | None:
    """The PATH of ``--init model:PATH`` (then the Config's init is ``content``), else None."""
    if not args.init.startswith("model:"):
        return None
    path, args.init = args.init[len("model:"):], "content"
    return path


def _model_start(path: str | None, pr: Any) -> tuple[Any, dict[str, Any]]:
    """``(start, metadata)``: for ``--init model:PATH`` the trained network's output for
    the content (None: the Config's start) and the run's metadata saying so."""
    if path is None:
        return None, pr.meta
    from nst_jax.models import johnson, store

    try:
        params, arch, _ = store.load_model(path)
    except store.ModelError as e:
        raise CliError(f"--init: {e}") from None
    return johnson.apply_jit(params, pr.content, arch=arch), {**pr.meta, "init": f"model:{path}"}


def run(args: argparse.Namespace) -> int:
    """The ``stylize`` subcommand; returns the exit code."""
    with Interrupts() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: Interrupts) -> int:
    import jax

    from nst_jax.layout import Layout
    from nst_jax.optimize import iterate

    t_start = time.perf_counter()
    start_distributed(args)
    select_device(args.device)  # before anything starts a backend
    is_main = jax.process_index() == 0  # on several hosts, process 0 writes the files
    out = _choose_output(args) if is_main else Path(args.output or "unused.png")
    every = report_interval(args.report_every, args.save_every, args.checkpoint_every,
                            (args.animate_every or args.report_every) if args.animate else None)
    init_model = _model_init_path(args)
    pr = prepare(args, every)
    write_auto_regions(pr, args, out if is_main else None)
    init, base_meta = _model_start(init_model, pr)
    config = pr.config
    ckpt_path = checkpoint_path(out)
    run_settings = {k: v for k, v in vars(args).items() if k not in NOT_RESULT}
    run_settings["inputs"] = _inputs_digest(args)
    resume = _check_resume(args, run_settings) if args.resume else None
    if stop.requested:
        return _nothing_saved(stop, "the run started")
    bar = ProgressBar(config.iterations * config.scales, args.quiet or not is_main)
    side = _SideWrites(args, out, bar, base_meta, run_settings, is_main)
    last = None
    status = "done"
    try:
        for p in iterate(pr.content, pr.styles, pr.params, pr.spec, config=config,
                         key=jax.random.key(args.seed), style_blend=pr.blend, resume=resume, init=init,
                         snapshots=bool(args.checkpoint_every), layout=pr.layout or Layout(),
                         guides=pr.guides):
            last = p
            bar.update(p)
            side.progress(p, stop.requested)
            if p.error:
                status = "stopped: " + p.error
            if stop.requested:
                status = "interrupted"
                break
    except KeyboardInterrupt:
        status = "interrupted"
    except (ValueError, TypeError, KeyError) as e:
        if last is None and resume is not None:  # a snapshot that does not fit this run
            raise CliError(f"--resume {args.resume}: {e}") from None
        raise
    if last is None:
        return _nothing_saved(stop, "the first iterate was computed")
    if not is_main:
        return stop.exit_code if status == "interrupted" else EXIT_OK
    written, why, image = _save_result(args, out, last.image, side.meta_for(last, status), pr)
    side.finish(image)
    code = _report(args, last, status, out, written, why, side.failed, t_start)
    if status == "interrupted":
        if args.checkpoint_every:
            print(f"to continue, run the same command with --resume {ckpt_path} --overwrite",
                  file=sys.stderr)
        return stop.exit_code
    return code


class _SideWrites:
    """What a run writes besides its result: frames (``--save-every``), checkpoints
    (``--checkpoint-every``) and the animation (``--animate``). A failed write is
    reported and the run goes on (the exit code says so at the end); only process 0 writes."""

    def __init__(self, args: argparse.Namespace, out: Path, bar: Any, base_meta: dict,
                 run_settings: dict, is_main: bool) -> None:
        from nst_jax.cli.animate import Recorder

        self.args, self.out, self.bar, self.base_meta = args, out, bar, base_meta
        self.run_settings, self.is_main = run_settings, is_main
        self.failed: list[str] = []
        self.anim = (Recorder(Path(args.animate), args.animate_every or args.report_every)
                     if args.animate and is_main else None)

    def meta_for(self, p: Any, status: str) -> dict:
        return {**self.base_meta, "status": status, "steps": p.step, "evals": p.evals,
                "scale": p.scale, "converged": p.converged, "final_costs": p.costs,
                "compile_s": round(p.compile_s, 3), "iterate_s": round(p.run_s, 3)}

    def _write(self, what: str, fn: Any) -> None:
        from nst_jax import image as I

        if not self.is_main:
            return
        try:
            fn()
        except (OSError, I.ImageError, ValueError) as e:
            self.failed.append(what)
            self.bar.line(f"error: {what} not written ({e}); the run goes on")

    def progress(self, p: Any, stopping: bool) -> None:
        from nst_jax import image as I

        a = self.args
        if self.anim is not None and not p.finished:
            self.anim.add(p.step, p.image)
        if a.save_every and p.step % a.save_every == 0 and not p.finished:
            frame = frame_path(self.out, p.step)
            self._write(f"frame {frame}", lambda: I.save_image(
                frame, p.image, self.meta_for(p, "frame"), overwrite=a.overwrite, bit_depth=a.bit_depth))
        if a.checkpoint_every and (p.step % a.checkpoint_every == 0 or stopping) and not p.finished:
            from nst_jax.checkpoint import save_checkpoint

            ckpt = checkpoint_path(self.out)
            self._write(f"checkpoint {ckpt}", lambda: save_checkpoint(ckpt, p.snapshot, self.run_settings))

    def finish(self, image: Any) -> None:
        """The animation, ending on the saved result ``image``."""
        if self.anim is not None:
            self._write(f"animation {self.anim.path}", lambda: self.anim.write(image, self.args.overwrite))


def _save_result(args: argparse.Namespace, out: Path, image: Any, meta: dict,
                 pr: Any) -> tuple[Path, str | None, Any]:
    """Write the result (after ``--smooth``'s post-pass) with the no-overwrite fallback;
    returns ``(path written, why not ``out``, the image written)``."""
    from nst_jax import image as I

    if args.smooth:
        image = smooth_result(image, pr.content, args.smooth, band=pr.config.tile)
        meta = {**meta, "smooth": args.smooth}
    written, why = save_with_fallback(
        out, lambda path, ow: I.save_image(path, image, meta, overwrite=ow, bit_depth=args.bit_depth),
        overwrite=args.overwrite)
    return written, why, image


def _nothing_saved(stop: Interrupts, before: str) -> int:
    print(f"interrupted ({stop.name}): stopped before {before}; nothing saved", file=sys.stderr)
    return stop.exit_code


def run_inputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Every file the run reads, as ``(what, path)``: content, styles, masks, weights."""
    from nst_jax.cli.regions import split_styles

    styles, masks = split_styles(args.style)
    named = [("content image", args.content), *(("style image", s) for s in styles),
             *(("mask", m) for m in masks),
             ("mask", getattr(args, "mask_colors", None)),
             *(("style region mask", m) for m in (getattr(args, "style_regions", None) or [])),
             ("content mask", getattr(args, "content_mask", None)), ("weights file", args.weights)]
    return [(w, Path(p)) for w, p in named if p and p != "-"]


def _choose_output(args: argparse.Namespace) -> Path:
    """``--output`` or a free default name, with every file the run will write checked."""
    from nst_jax import image as I
    from nst_jax.cli.animate import check_animation

    if args.animate:
        check_animation(args.animate)

    if not args.output:
        out = _free_default(args)
        check_outputs(planned_outputs(args, out), args.overwrite)
        return out
    refuse_overlap([("output", p) for p in planned_outputs(args, Path(args.output))],
                   run_inputs(args))
    out = Path(args.output)
    try:
        fmt = I.format_of(out)
    except I.ImageError as e:
        raise CliError(str(e)) from None
    if args.bit_depth == 16 and fmt != "PNG":
        raise CliError(f"--bit-depth 16: {out.name} is {fmt}, which has 8 bits per channel only; "
                       "write a .png")
    check_outputs(planned_outputs(args, out), args.overwrite)
    if args.save_every and not args.overwrite and (old := _earlier_frames(out)):
        raise CliError(f"{old[0]} exists (frames of an earlier run); pass --overwrite or "
                       "choose another --output")
    return out


def _report(args: argparse.Namespace, last: Any, status: str, out: Path, written: Path,
            why: str | None, write_failed: list[str], t_start: float) -> int:
    """The final lines; returns the exit code of a run that was not interrupted."""
    c = last.costs
    print(f"{status}: wrote {written} ({last.step} iterations, {last.evals} evaluations) in "
          f"{fmt_time(time.perf_counter() - t_start)} (compile+first chunk {last.compile_s:.1f}s); "
          f"final costs: content {c['content']:.4g}, style {c['style']:.4g}, total {c['total']:.4g}",
          file=sys.stderr)
    code = EXIT_OK if status == "done" else EXIT_FAILED
    if why is not None:
        concurrent = not args.output and written.parent == out.parent
        if not concurrent:  # a default name taken meanwhile is just the next number
            print(f"error: {why}; the result was saved to {written} instead", file=sys.stderr)
            code = EXIT_FAILED
    if write_failed:
        counts = {w: write_failed.count(w) for w in write_failed}  # each name once
        print("error: not written: " + ", ".join(w if n == 1 else f"{w} ({n} times)"
                                                  for w, n in counts.items()), file=sys.stderr)
        code = EXIT_FAILED
    return code


__all__ = ["fill_parser", "planned_outputs", "run"]
