"""[I/O] ``nst-jax batch``: many photos in one style, one compiled program per image shape."""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path
from typing import Any

from nst_jax.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Interrupts,
    add_distributed,
    check_outputs,
    fmt_time,
    positive_int,
    ranged,
    refuse_overlap,
    select_device,
    start_distributed,
)
from nst_jax.cli.inputs import add_common_args, prepare
from nst_jax.cli.photo import check_colour, smooth_result

DESCRIPTION = """Stylize many photos in one style: the photos are resized to --size, grouped by
shape, and every group runs as one vmapped, compiled program (sharded over all
devices, and over all hosts with the distributed flags: every process runs the same
command and process 0 writes), --chunk photos at a time, with the style targets
computed once.

Example:
  {prog} holiday/ 'more/*.jpg' painting.jpg -o out/holiday --size 384 --iters 300
"""

#: What a folder contributes: its files with these suffixes, sorted by name.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = DESCRIPTION.format(prog=ap.prog)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("inputs", nargs="+", metavar="CONTENT",
                    help="photos: files, folders (their images) or glob patterns; the last "
                         "argument is the style image unless --style is given")
    ap.add_argument("--style", nargs="+", default=None, metavar="STYLE",
                    help="style image(s), blended with --style-weights (default: the last CONTENT)")
    ap.add_argument("-o", "--output", default=None,
                    help="output folder (default: out/batch-STYLE, numbered if taken); each photo "
                         "becomes PHOTO-STYLE.png there, with its own metadata")
    ap.add_argument("--chunk", type=ranged(positive_int, hi=10**6), default=None, metavar="K",
                    help="optimise K photos at a time to bound memory, rounded up to a multiple of "
                         "the device count (default: a whole group of equal shapes)")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted batch: photos already written to the output "
                         "folder by a run with the same settings are kept and skipped")
    add_distributed(ap)
    add_common_args(ap)
    ap.set_defaults(size=384)
    return ap


def expand(inputs: list[str]) -> list[Path]:
    """Files as given; folders as their images (sorted); glob patterns expanded (sorted).
    A pattern or folder that yields nothing is an error."""
    out: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise CliError(f"{s}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif not p.exists() and glob.has_magic(s):
            found = sorted(Path(q) for q in glob.glob(s) if Path(q).is_file())
            if not found:
                raise CliError(f"{s}: no file matches this pattern")
            out += found
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def output_names(photos: list[Path], style: str) -> list[str]:
    """``PHOTO-STYLE.png`` per photo, unique over the whole batch, decided before any work.

    The first photo to want a name gets it; then every other photo whose name is taken
    (equal stems from different folders, or a stem that looks like a numbered name)
    gets the first free ``PHOTO-STYLE-N.png``. Names are compared case-insensitively,
    so no two results collide on a case-insensitive file system either.
    """
    bases = [f"{p.stem}-{Path(style).stem}" for p in photos]
    names: list[str | None] = [None] * len(photos)
    taken: set[str] = set()
    for i, b in enumerate(bases):
        if f"{b}.png".casefold() not in taken:
            names[i] = f"{b}.png"
            taken.add(names[i].casefold())
    for i, b in enumerate(bases):
        n = 1
        while names[i] is None:
            cand = f"{b}-{n}.png"
            if cand.casefold() not in taken:
                names[i] = cand
                taken.add(cand.casefold())
            n += 1
    return [n for n in names if n is not None]


def _folder(args: argparse.Namespace, style: str) -> Path:
    if args.output:
        out = Path(args.output)
        if out.exists() and not out.is_dir():
            raise CliError(f"output {out} exists and is not a folder")
        return out
    stem = f"batch-{Path(style).stem}"
    for i in range(100000):
        cand = Path("out") / (stem if i == 0 else f"{stem}-{i}")
        if not cand.exists():
            return cand
    raise CliError(f"no free output folder like out/{stem}")


def run(args: argparse.Namespace) -> int:
    """The ``batch`` subcommand; returns the exit code."""
    from nst_jax import image as I

    t_start = time.perf_counter()
    start_distributed(args)  # before anything starts a backend
    select_device(args.device)
    import jax

    is_main = jax.process_index() == 0  # on several hosts, process 0 writes the files
    inputs = list(args.inputs)
    if args.style is None:
        if len(inputs) < 2:
            raise CliError("expected photos and then a style image (or --style STYLE)")
        args.style = [inputs.pop()]
    if args.auto_regions:
        raise CliError(f"--auto-regions {args.auto_regions} finds one photo's regions: use nst-jax stylize")
    photos = expand(inputs)
    out = _folder(args, args.style[0])
    refuse_overlap([("output folder", out)], [*(("photo", p) for p in photos),
                                              *(("style image", Path(s)) for s in args.style)])
    failed: list[str] = []
    shapes: dict[Path, tuple[int, int]] = {}
    for p in photos:  # headers only; a bad photo is skipped, the rest still run
        try:
            shapes[p] = I.image_shape(p, args.size)
        except I.ImageError as e:
            failed.append(str(p))
            print(f"error: {e} (skipped)", file=sys.stderr)
    if not shapes:
        raise CliError(f"none of the {len(photos)} photo(s) can be read")
    names = dict(zip(shapes, output_names(list(shapes), args.style[0]), strict=True))
    created = not out.exists()
    written = [p for p, n in names.items() if (out / n).exists()] if args.resume else []
    try:
        if is_main:
            out.mkdir(parents=True, exist_ok=True)
            check_outputs([out / n for p, n in names.items() if p not in written], args.overwrite)
        # The settings are checked on the photo with the largest short side (the others
        # are checked one by one below: a photo too small for the layers is skipped).
        args.content = str(max(shapes, key=lambda p: min(shapes[p])))
        pr = prepare(args, args.report_every, points=args.chunk or len(shapes))
        if pr.guides is not None:
            raise CliError("regions and masks belong to one photo: use nst-jax stylize for them")
        _check_written(written, names, out, pr.meta["settings"])
    except OSError as e:
        raise CliError(f"cannot create output folder {out}: {e.strerror or e}") from None
    except CliError:
        if is_main and created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    if written and not args.quiet and is_main:
        print(f"resume: {len(written)} photo(s) already written, {len(shapes) - len(written)} to go",
              file=sys.stderr)
    readable = [p for p in shapes if p not in written and _fits(p, shapes[p], pr, failed)]
    contents, kept = [], []
    for p in readable:
        try:
            img = I.load_image(p, args.size)
            check_colour(args, img, str(p))
            contents.append(img)
            kept.append(p)
        except (I.ImageError, CliError) as e:
            failed.append(str(p))
            print(f"error: {e} (skipped)", file=sys.stderr)
    return _run(args, pr, contents, kept, names, out if is_main else None, failed, len(photos), t_start)


#: Settings that do not change a photo's result (left out of --resume's comparison).
_NOT_RESULT = ("content", "inputs", "output", "resume", "overwrite", "quiet", "report_every", "device",
               "chunk", "devices", "distributed", "coordinator", "num_processes", "process_id", "tile",
               "bit_depth")


def _check_written(written: list[Path], names: dict, out: Path, settings: dict[str, Any]) -> None:
    """``--resume``: every output already there must be a finished photo of a run with
    these settings (read from its metadata), else the batch is refused, naming it."""
    import json

    from nst_jax import image as I

    now = json.loads(json.dumps({k: v for k, v in settings.items() if k not in _NOT_RESULT}, default=str))
    for p in written:
        f = out / names[p]
        try:
            meta = I.read_metadata(f)
        except (OSError, ValueError) as e:
            raise CliError(f"--resume: {f}: cannot read its metadata ({e}); remove it or pass --overwrite "
                           "without --resume") from None
        then = {k: v for k, v in meta.get("settings", {}).items() if k not in _NOT_RESULT}
        diff = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
        if meta.get("status") != "done" or diff:
            why = "not a finished photo" if meta.get("status") != "done" else \
                "other settings: " + ", ".join(f"{k} ({then.get(k)!r}, now {now.get(k)!r})" for k in diff[:3])
            raise CliError(f"--resume: {f}: {why}")


def _fits(photo: Path, hw: tuple[int, int], pr: Any, failed: list[str]) -> bool:
    """Whether ``photo`` (``hw`` at --size) is large enough for the layers; else it is
    skipped with the reason, like an unreadable one."""
    from nst_jax.scales import check_sizes

    try:
        check_sizes((*hw, 3), [], pr.arch, pr.config, names=[str(photo)])
        return True
    except ValueError as e:
        failed.append(str(photo))
        print(f"error: {e} (skipped)", file=sys.stderr)
        return False


def _run(args: argparse.Namespace, pr: Any, contents: list, kept: list[Path], names: dict,
         out: Path | None, failed: list[str], n_photos: int, t_start: float) -> int:
    """Stylize and write (``out`` None: another host's process, which computes its share
    and writes nothing)."""
    import jax

    from nst_jax import image as I
    from nst_jax.batch import iterate_batch

    written = 0
    with Interrupts() as stop:
        def progress(done: int, total: int, p: Any) -> bool:
            if not args.quiet and out is not None:
                print(f"[{'#' * int(24 * done / total):<24}] {done}/{total} iterations "
                      f"({len(contents)} photos), {fmt_time(time.perf_counter() - t_start)} elapsed",
                      file=sys.stderr, flush=True)
            return stop.requested

        for results in iterate_batch(contents, pr.styles, pr.params, pr.spec, config=pr.config,
                                     key=jax.random.key(args.seed), style_blend=pr.blend,
                                     chunk_points=args.chunk, callback=progress):
            for i, image, info in results:
                if out is None:
                    continue
                photo = kept[i]
                meta = {**pr.meta, "content": str(photo), "status": "done" if info["ok"] else "failed",
                        "steps": info["steps"], "final_costs": info["costs"]}
                meta["settings"] = {**meta["settings"], "content": str(photo)}
                if not info["ok"]:
                    failed.append(str(photo))
                    print(f"error: {photo}: {info['error']}", file=sys.stderr)
                    continue
                if args.smooth:
                    image = smooth_result(image, contents[i], args.smooth)
                    meta["smooth"] = args.smooth
                try:
                    I.save_image(out / names[photo], image, meta, overwrite=args.overwrite,
                                 bit_depth=args.bit_depth)
                    written += 1
                except (OSError, I.ImageError) as e:
                    failed.append(str(photo))
                    print(f"error: {out / names[photo]} not written ({e})", file=sys.stderr)
        if stop.requested:
            if out is not None:
                print(f"interrupted ({stop.name}): {written} finished photo(s) written to {out}",
                      file=sys.stderr)
            return stop.exit_code
    if out is None:
        return EXIT_OK
    print(f"done: {written} of {n_photos} photo(s) written to {out} in "
          f"{fmt_time(time.perf_counter() - t_start)}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} photo(s) failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


__all__ = ["expand", "fill_parser", "output_names", "run"]
