"""[I/O] ``nst-jax grid``: one image per point of a grid of loss weights, in one program."""

from __future__ import annotations

import argparse
import csv
import io
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
    RunError,
    add_distributed,
    check_outputs,
    fmt_time,
    parse_numbers,
    positive_int,
    ranged,
    select_device,
    start_distributed,
)
from nst_jax.cli.inputs import add_common_args, add_inputs, prepare, report_interval
from nst_jax.cli.photo import region_paths, write_auto_regions

DESCRIPTION = """Optimise one image per point of a grid of loss weights, in one compiled program
(jax.vmap over the weights, sharded over all devices, and over all hosts after
jax.distributed.initialize), and lay the results out on a labelled contact sheet.

Example:
  {prog} photo.jpg painting.jpg --alphas 1,10 --betas 1e-5,1e-4,1e-3 --size 128 --iters 200 -o out/grid
"""


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_inputs(ap, DESCRIPTION, "output folder (default: out/grid-CONTENT-STYLE, numbered if taken)")
    ap.add_argument("--alphas", default=None, help="content weights, e.g. 1,10,100 (default: --alpha)")
    ap.add_argument("--betas", default=None, help="style weights, e.g. 1e-5,1e-4,1e-3 (default: --beta)")
    ap.add_argument("--tv-weights", default=None, help="TV weights to sweep too (default: --tv-weight)")
    ap.add_argument("--photo-weights", default=None,
                    help="photorealism weights to sweep too (default: --photo-weight)")
    ap.add_argument("--chunk", type=ranged(positive_int, hi=10**6), default=None, metavar="K",
                    help="optimise K points at a time to bound memory, rounded up to a multiple "
                         "of the device count (default: all at once)")
    ap.add_argument("--per-point-seeds", action="store_true",
                    help="give each point its own initial noise (default: the same start everywhere)")
    ap.add_argument("--checkpoint-every", type=ranged(positive_int, hi=10**8), default=None, metavar="N",
                    help="save a resumable checkpoint OUT/grid.ckpt every N iterations and on "
                         "Ctrl-C/SIGTERM (default: off)")
    ap.add_argument("--resume", default=None, metavar="CKPT",
                    help="continue the grid saved in CKPT (give the same inputs and settings; "
                         "the output folder defaults to CKPT's)")
    add_distributed(ap)
    add_common_args(ap)
    ap.set_defaults(size=256)
    return ap


def _fmt(v: float) -> str:
    return f"{v:g}"


def name_of(pt: dict) -> str:
    parts = [f"a{_fmt(pt['alpha'])}", f"b{_fmt(pt['beta'])}"]
    if "tv_weight" in pt:
        parts.append(f"tv{_fmt(pt['tv_weight'])}")
    if "photo_weight" in pt:
        parts.append(f"ph{_fmt(pt['photo_weight'])}")
    return "_".join(parts) + ".png"


SUMMARY = ("contact_sheet.png", "costs.csv", "costs.json")
CHECKPOINT = "grid.ckpt"
#: The stem of the --auto-regions masks in the grid folder (auto.regions.png, ...).
REGIONS_STEM = "auto.png"


def _claim_default_folder(args: argparse.Namespace) -> Path:
    """``out/grid-CONTENT-STYLE``, numbered; claimed with ``mkdir`` (atomic), so two runs
    started at once never share a folder."""
    stem = f"grid-{Path(args.content).stem}-{Path(args.style[0]).stem}"
    Path("out").mkdir(exist_ok=True)
    for i in range(100000):
        cand = Path("out") / (stem if i == 0 else f"{stem}-{i}")
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            continue
    raise CliError(f"no free output folder like out/{stem}")


def _check_folder(out: Path, names: list[str], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CliError(f"output {out} exists and is not a folder")
    anc = out
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise CliError(f"cannot create output folder {out}: {anc} is not a folder")
    if out.is_dir():
        check_outputs([out / n for n in names], overwrite)
    else:
        check_outputs([anc / n for n in names[:1]], True)  # name length and writability


def write_all(out: Path, blobs: dict[str, bytes], overwrite: bool) -> tuple[Path, str | None]:
    """Write every file of a finished grid into ``out``; if any write fails, write them
    all into a fresh folder next to it (``OUT-1``...), else into the temp folder.

    Returns ``(folder written, why not out)``.

    Raises:
      RunError: no folder could take them.
    """
    import tempfile

    def into(folder: Path, ow: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        done: list[Path] = []
        try:
            for name, data in blobs.items():
                done.append(files.write_bytes(folder / name, data, overwrite=ow))
        except OSError:
            if not ow:  # only what this run created is removed
                for p in done:
                    p.unlink(missing_ok=True)
            raise

    problem = None
    candidates = [out, *(files.numbered(out, i) for i in range(1, 50)),
                  Path(tempfile.mkdtemp(prefix="nst_jax-grid-"))]
    for cand in candidates:
        if cand != out and cand != candidates[-1] and cand.exists():
            continue
        try:
            into(cand, overwrite and cand == out)
            if cand != candidates[-1]:
                Path(candidates[-1]).rmdir()
            return cand, problem
        except OSError as e:
            problem = problem or f"cannot write into {cand}: {e.strerror or e}"
    raise RunError(f"{problem}; the grid could not be written anywhere")


def run(args: argparse.Namespace) -> int:
    """The ``grid`` subcommand; returns the exit code."""
    with Interrupts() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: Interrupts) -> int:
    import jax

    from nst_jax.grid import grid_points, stylize_grid

    t_start = time.perf_counter()
    alphas = parse_numbers("--alphas", args.alphas)
    betas = parse_numbers("--betas", args.betas)
    tvs = parse_numbers("--tv-weights", args.tv_weights)
    extra = {"tv_weight": tvs} if tvs else {}
    if phs := parse_numbers("--photo-weights", args.photo_weights):
        extra["photo_weight"] = phs
    planned, _ = grid_points({"alpha": alphas or [args.alpha], "beta": betas or [args.beta], **extra})
    names = [name_of(pt) for pt in planned] + list(SUMMARY)
    start_distributed(args)
    select_device(args.device)
    is_main = jax.process_index() == 0
    if args.resume and not args.output:
        args.output = str(Path(args.resume).parent)
    if args.checkpoint_every and not (args.resume and Path(args.resume).name == CHECKPOINT):
        names.append(CHECKPOINT)
    if args.auto_regions:
        names += [p.name for p in region_paths(Path(REGIONS_STEM), args.auto_regions)]
    if args.output and is_main:
        _check_folder(Path(args.output), names, args.overwrite)
    held = min(args.chunk or len(planned), len(planned))
    pr = prepare(args, report_interval(args.report_every, args.checkpoint_every),
                 points=held)
    n_dev = len(jax.devices())
    rounded = -(-held // n_dev) * n_dev
    if args.chunk and rounded != args.chunk and not args.quiet and is_main:
        print(f"note: --chunk {args.chunk} runs as {rounded} points at a time (a multiple of "
              f"the {n_dev} devices; padding points are copies, trimmed)", file=sys.stderr)
    if not is_main:  # on several hosts, process 0 writes the files
        out = None
    else:
        out = Path(args.output) if args.output else _claim_default_folder(args)
    write_auto_regions(pr, args, None if out is None else out / REGIONS_STEM, make_folder=True)
    last_print = [0.0]
    settings, resume = _resume_state(args)
    saver = _snapshots(args, out, settings, stop)  # every process: a snapshot gathers from all

    def progress(done: int, total: int) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        now = time.perf_counter()
        if not args.quiet and is_main and (done == total or now - last_print[0] > 1.0):
            last_print[0] = now
            print(f"[{'#' * int(24 * done / total):<24}] {done}/{total} iterations "
                  f"({len(planned)} points), {fmt_time(now - t_start)} elapsed",
                  file=sys.stderr, flush=True)

    try:
        res = stylize_grid(pr.content, pr.styles, pr.params, pr.spec, config=pr.config,
                           alphas=alphas, betas=betas, key=jax.random.key(args.seed),
                           per_point_seeds=args.per_point_seeds, chunk_points=args.chunk,
                           style_blend=pr.blend, callback=progress, guides=pr.guides, resume=resume,
                           on_snapshot=saver if args.checkpoint_every else None, **extra)
    except KeyboardInterrupt:
        if out is not None and not args.output:
            _remove_if_empty(out)
        if args.checkpoint_every and out is not None and (out / CHECKPOINT).exists():
            print(f"interrupted ({stop.name}): the images are written when the grid is complete; "
                  f"to continue, run the same command with --resume {out / CHECKPOINT} --overwrite",
                  file=sys.stderr)
        else:
            print(f"interrupted ({stop.name}): nothing written (a grid is saved only when complete)",
                  file=sys.stderr)
        return stop.exit_code
    if out is None:
        return EXIT_OK if res.ok.all() else EXIT_FAILED
    blobs, rows = _encode(res, pr, args)
    folder, why = write_all(out, blobs, args.overwrite)
    if folder == out and args.checkpoint_every:  # complete: the images replace the checkpoint
        (out / CHECKPOINT).unlink(missing_ok=True)
    if folder != out and not args.output:
        _remove_if_empty(out)
    code = EXIT_OK if res.ok.all() else EXIT_FAILED
    print(f"done: wrote {len(rows)} images, {folder / 'contact_sheet.png'} and {folder / 'costs.csv'} "
          f"in {fmt_time(time.perf_counter() - t_start)} (compile+first call {res.compile_s:.1f}s)",
          file=sys.stderr)
    if why is not None:
        print(f"error: {why}; the grid was written to {folder} instead", file=sys.stderr)
        code = EXIT_FAILED
    return code


def _resume_state(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The settings a checkpoint records, and with ``--resume`` the grid state, checked
    against them (the same inputs, by sha256, and the same result-changing settings)."""
    from nst_jax.checkpoint import CheckpointError, load_grid_checkpoint
    from nst_jax.cli.stylize import NOT_RESULT, _inputs_digest

    settings = {k: v for k, v in vars(args).items() if k not in NOT_RESULT}
    settings["inputs"] = _inputs_digest(args)
    if not args.resume:
        return settings, None
    try:
        grid, saved = load_grid_checkpoint(args.resume)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    now = json.loads(json.dumps(settings, default=str))
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        raise CliError(f"--resume {args.resume}: inputs or settings differ from the checkpoint's: "
                       + ", ".join(f"{k} (checkpoint {saved.get(k)!r}, now {now.get(k)!r})"
                                   for k in diff))
    return settings, grid


def _snapshots(args: argparse.Namespace, out: Path | None, settings: dict[str, Any], stop: Interrupts) -> Any:
    """``on_snapshot``: write ``out/grid.ckpt`` every ``--checkpoint-every`` steps and
    when a stop is requested (the callback after it then raises); ``out`` None: another
    host's process, which takes part in the snapshot's gather and writes nothing."""
    from nst_jax.checkpoint import save_grid_checkpoint

    first = [True]

    def save(grid: dict[str, Any]) -> None:
        if out is not None and (grid["steps"] % args.checkpoint_every == 0 or stop.requested):
            out.mkdir(parents=True, exist_ok=True)
            try:
                save_grid_checkpoint(out / CHECKPOINT, grid, settings)
            except OSError as e:
                print(f"error: checkpoint {out / CHECKPOINT} not written ({e}); the run goes on",
                      file=sys.stderr)
                return
            if first[0] and not args.quiet:
                print(f"checkpoint: {out / CHECKPOINT} at iteration {grid['steps']}, then every "
                      f"{args.checkpoint_every}", file=sys.stderr, flush=True)
            first[0] = False

    return save


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _encode(res: Any, pr: Any, args: argparse.Namespace) -> tuple[dict[str, bytes], list[dict]]:
    """Every output file of a finished grid, encoded in memory (nothing written yet)."""
    from nst_jax import image as I

    blobs: dict[str, bytes] = {}
    rows = []
    for i, pt in enumerate(res.points):
        costs = {k: float(v[i]) for k, v in res.costs.items()}
        meta = {**pr.meta, "status": "done" if res.ok[i] else "stopped: non-finite cost",
                "point": pt, "steps": pr.config.iterations, "final_costs": costs}
        blobs[name_of(pt)] = I.encode_image(res.images[i], "PNG", meta, bit_depth=args.bit_depth)
        rows.append({**pt, **costs, "ok": bool(res.ok[i]), "file": name_of(pt)})
    n_a = len(dict.fromkeys(p["alpha"] for p in res.points))
    labels = []
    for r in rows:
        lab = f"a={_fmt(r['alpha'])} b={_fmt(r['beta'])}"
        if "tv_weight" in r:
            lab += f" tv={_fmt(r['tv_weight'])}"
        if "photo_weight" in r:
            lab += f" photo={_fmt(r['photo_weight'])}"
        labels.append(lab + f"\nJc={r['content']:.3g} Js={r['style']:.3g}")
    sheet = I.contact_sheet(res.images, labels, n_a, len(res.points) // n_a,
                            title=f"{pr.config.optimizer}, {pr.config.iterations} iterations, "
                                  f"rows: alpha, columns: {' x '.join(res.axes[1:]) or 'beta'}")
    blobs["contact_sheet.png"] = I.encode_image(sheet, "PNG", {**pr.meta, "points": rows})
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(rows[0]))
    wr.writeheader()
    wr.writerows(rows)
    blobs["costs.csv"] = buf.getvalue().encode()
    blobs["costs.json"] = (json.dumps(
        {"settings": pr.meta["settings"], "weights": pr.meta["weights"], "points": rows,
         "compile_s": res.compile_s, "run_s": res.run_s}, indent=1, default=str) + "\n").encode()
    return blobs, rows


__all__ = ["fill_parser", "run", "write_all"]
