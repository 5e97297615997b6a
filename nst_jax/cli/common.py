"""[I/O] What every subcommand shares: one-line errors, signals, progress, loading and
checking the inputs, and saving results without losing them (number parsing lives in
:mod:`nst_jax.cli.numbers`, re-exported here)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from nst_jax import files
from nst_jax.cli.errors import CliError, RunError
from nst_jax.cli.numbers import (  # re-exported (__all__): the subcommands import them from here
    MAX_SIDE,
    MAX_WEIGHT,
    integer,
    nonneg_float,
    parse_numbers,
    parse_style_layers,
    positive_float,
    positive_int,
    ranged,
    tile_arg,
)

#: XLA:CPU scheduler setting the command-line tools use unless XLA_FLAGS already sets it:
#: measured 44-48% less memory for the fused step (VGG16: 255 -> 142 MB at 256 px,
#: 784 -> 407 MB at 512 px) at the same or slightly better speed. XLA reads it when the
#: backend starts, which importing nst_jax never does, so setting it in ``main`` works.
CPU_XLA_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"

#: Exit codes (README "Exit codes").
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


#: The jaxlib versions each flag we set is known to exist in, ``[first, last tested]``:
#: XLA aborts the whole process on a flag it does not know, so a jaxlib outside the
#: range runs without it (only the memory saving is lost) rather than not at all.
XLA_FLAG_VERSIONS = {CPU_XLA_FLAG: ((0, 4, 31), (0, 10, 99))}


def jaxlib_version() -> tuple[int, ...]:
    """The installed jaxlib's version as integers (``(0, 10, 2)``), read from its
    package metadata (importing jaxlib is not needed); ``()`` when unknown."""
    import re
    from importlib.metadata import PackageNotFoundError, version

    try:
        return tuple(int(x) for x in re.findall(r"\d+", version("jaxlib"))[:3])
    except PackageNotFoundError:
        return ()


def supported_xla_flag(flag: str, jaxlib: tuple[int, ...] | None = None) -> bool:
    """Whether ``flag`` may be put in ``XLA_FLAGS`` with this jaxlib (see
    :data:`XLA_FLAG_VERSIONS`)."""
    v = jaxlib_version() if jaxlib is None else jaxlib
    lo, hi = XLA_FLAG_VERSIONS[flag]
    return bool(v) and lo <= v <= hi


def default_xla_flags() -> None:
    """Add :data:`CPU_XLA_FLAG` to ``XLA_FLAGS`` unless the user set that flag or this
    jaxlib is not known to have it."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags and supported_xla_flag(CPU_XLA_FLAG):
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_XLA_FLAG}".strip()


def load_weights_arg(path: str | None) -> tuple[Any, dict, Any, dict]:
    """``(path, params, spec, metadata)`` of ``--weights`` (or the default file); a
    missing or bad file is a :class:`CliError`."""
    from nst_jax import weights as W

    try:
        wpath = W.find_weights(path)
        params, spec = W.load_weights(wpath)
        return wpath, params, spec, W.read_metadata(wpath)
    except W.WeightsError as e:
        raise CliError(str(e)) from None


def fail(msg: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: MESSAGE (see PROG --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- signals


#: Signals caught before a run's :class:`Interrupts` took over (see :func:`catch_early_signals`).
_EARLY: list[int] = []


def _early(signum: int, frame: Any) -> None:
    _EARLY.append(signum)


@contextlib.contextmanager
def catch_early_signals() -> Iterator[None]:
    """Around all of ``main``: Ctrl-C and SIGTERM are recorded, not raised, so a signal
    while JAX and the extension modules are imported neither crashes inside an import
    nor prints a traceback; the run's :class:`Interrupts` then sees it and stops before
    computing (exit 130/143). The previous handlers come back at the end."""
    import threading

    _EARLY.clear()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in Interrupts.SIGNALS:
            previous[s] = signal.signal(s, _early)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Interrupts:
    """SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, batch schedulers) ask the run
    to stop at the next report, where the current result is saved; a second signal
    stops at once (``KeyboardInterrupt``). The exit code is ``128 + signal``: 130, 143.

    A context manager; outside the main thread it installs nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = _EARLY[0] if _EARLY else None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name

    def __enter__(self) -> Interrupts:
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()


# ----------------------------------------------------------------------------- progress


def fmt_time(s: float) -> str:
    s = round(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ProgressBar:
    """Progress on stderr: a redrawn bar on a terminal, one line per report otherwise."""

    def __init__(self, total: int, quiet: bool, stream: Any = None) -> None:
        self.total, self.quiet = total, quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.compile_reported = False

    def update(self, p: Any) -> None:
        if self.quiet:
            return
        if not self.compile_reported:
            self.compile_reported = True
            self.line(f"compiled and ran the first {p.step} iterations in {p.compile_s:.1f}s")
        rate = p.run_steps / p.run_s if p.run_s > 0 and p.run_steps > 0 else None
        eta = (self.total - p.step) / rate if rate else None
        bar = "#" * int(24 * p.step / self.total)
        c = p.costs
        msg = (f"[{bar:<24}] {p.step}/{self.total} "
               f"{f'{rate:.2f} it/s' if rate else '-- it/s'} "
               f"ETA {fmt_time(eta) if eta is not None else '--'} | "
               f"content {c['content']:.4g} style {c['style']:.4g} total {c['total']:.4g}")
        if self.tty:
            self.stream.write("\r" + msg + "\033[K")
            if p.finished:
                self.stream.write("\n")
            self.stream.flush()
        else:
            self.line(msg)

    def line(self, msg: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(msg + "\n")
        self.stream.flush()


# ----------------------------------------------------------------------------- outputs


def check_outputs(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse, before any compute, output names that cannot be written (see
    :func:`nst_jax.files.check_new_name`)."""
    for p in paths:
        try:
            files.check_new_name(p, overwrite=overwrite)
        except files.OutputError as e:
            raise CliError(str(e)) from None


def _same_or_inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` (after resolving links, or the same file by inode) or lies inside it."""
    ra, rb = a.resolve(), b.resolve()
    if ra == rb or rb in ra.parents:
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overlap(outputs: Iterable[tuple[str, Path]], inputs: Iterable[tuple[str, Path]]) -> None:
    """Refuse, whatever ``--overwrite`` says, an output that is, contains or lies inside
    an input: writing (or cleaning) it would destroy what the run reads.

    ``outputs`` and ``inputs`` are ``(what, path)`` pairs; the message names both.

    Raises:
      CliError: the first overlapping pair.
    """
    ins = [(w, Path(p)) for w, p in inputs if p is not None and str(p) not in ("", "-")]
    for what_out, o in outputs:
        o = Path(o)
        for what_in, i in ins:
            if _same_or_inside(o, i):
                rel = "is" if o.resolve() == i.resolve() or not i.is_dir() else "lies inside"
                raise CliError(f"{what_out} {o} {rel} the {what_in} {i}: it would destroy the "
                               "input (refused even with --overwrite); choose another output")
            if _same_or_inside(i, o):
                raise CliError(f"{what_out} {o} holds the {what_in} {i}: writing there would mix "
                               "results with the inputs or replace them (refused even with "
                               "--overwrite); choose another output")


def save_with_fallback(dest: Path, write: Callable[[Path, bool], Any], *,
                       overwrite: bool) -> tuple[Path, str | None]:
    """Write a computed result to ``dest``, or, when that fails, to the first fallback
    name that works (:func:`nst_jax.files.fallback_names`): the result is never lost.

    ``write(path, overwrite)`` writes the result. Returns ``(path written, why not
    dest)``: the reason is ``None`` when ``dest`` itself was written. A name that
    appeared meanwhile (another run) moves on to the next number in the same folder;
    any other failure (disk full, name too long, folder gone) goes to the temp folder.

    Raises:
      RunError: nothing could be written anywhere.
    """
    problem: str | None = None
    skip_folder = False
    for cand in (dest, *files.fallback_names(dest)):
        if skip_folder and cand.parent == dest.parent:
            continue
        try:
            write(cand, overwrite and cand == dest)
            return cand, problem
        except FileExistsError as e:
            problem = problem or str(e)
        except OSError as e:
            problem = problem or f"cannot write {cand}: {e.strerror or e}"
            skip_folder = True
    raise RunError(f"{problem}; the result could not be written anywhere (tried "
                   f"{dest.parent} and the temp folder)")


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- device


def select_device(name: str | None) -> None:
    """Make JAX use platform ``name`` (``cpu``, ``gpu``, ``tpu``), or fail with a CliError.

    Works only before JAX's backend starts (importing nst_jax does not start it); if
    it already runs on another platform, that is an error too, never a silent switch.
    """
    import jax

    if name is None:
        return
    try:
        jax.config.update("jax_platforms", name)
        platform = jax.devices()[0].platform
    except RuntimeError as e:
        raise CliError(f"--device {name}: no {name} device available "
                       f"({str(e).splitlines()[0]})") from None
    if platform != name:
        raise CliError(f"--device {name}: JAX already runs on {platform} in this process")


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
    layout: Any = None  # nst_jax.layout.Layout of --devices (None: one device)
    guides: Any = None  # nst_jax.guides.Guides of the region and mask flags (None: none)
    regions: Any = None  # nst_jax.autoregions.Pairing of --auto-regions (None: not asked)


def add_distributed(ap: argparse.ArgumentParser) -> None:
    """The flags of a run over several hosts (``jax.distributed``)."""
    m = ap.add_argument_group("several hosts (jax.distributed; every process runs the same command)")
    m.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() (auto-detected on SLURM, Open MPI, "
                        "TPU pods; or give the three flags below)")
    m.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="address of process 0's coordinator service")
    m.add_argument("--num-processes", type=ranged(positive_int, hi=100_000), default=None, metavar="N")
    m.add_argument("--process-id", type=ranged(integer, 0, 100_000), default=None, metavar="I")


def start_distributed(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` from the flags, before any backend starts; CPU
    collectives go through gloo (XLA's CPU default has none across processes)."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if not args.distributed and all(v is None for v in given):
        return
    if any(v is None for v in given) and not all(v is None for v in given):
        raise CliError("--coordinator, --num-processes and --process-id go together")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except (RuntimeError, ValueError) as e:
        raise CliError(f"jax.distributed.initialize failed: {str(e).splitlines()[0]}") from None


def devices_arg(s: str) -> int | str:
    """``--devices``: ``all`` or a positive count."""
    if s.strip().lower() == "all":
        return "all"
    return positive_int(s)


__all__ = [
    "CPU_XLA_FLAG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MAX_SIDE",
    "MAX_WEIGHT",
    "XLA_FLAG_VERSIONS",
    "CliError",
    "Interrupts",
    "Parser",
    "Prepared",
    "ProgressBar",
    "RunError",
    "add_distributed",
    "catch_early_signals",
    "check_outputs",
    "default_xla_flags",
    "devices_arg",
    "fail",
    "fmt_time",
    "integer",
    "jaxlib_version",
    "load_weights_arg",
    "nonneg_float",
    "parse_numbers",
    "parse_style_layers",
    "positive_float",
    "positive_int",
    "ranged",
    "refuse_overlap",
    "save_with_fallback",
    "select_device",
    "sha256_of",
    "start_distributed",
    "supported_xla_flag",
    "tile_arg",
]
