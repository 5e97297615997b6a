"""[host] The studio's jobs: a queue served by one worker thread, running the one engine.

A single run goes through :func:`nst_jax.engine.iterate` exactly as the command line
does; a sweep through the same loop with the grid's batched layout (one compiled,
vmapped program for every alpha/beta point, as :func:`nst_jax.stylize_grid`). After
each report chunk the job's state (step, costs, timings, the current image as PNG)
is updated and a version counter bumped, which the web layer streams. One job runs
at a time; the others wait in order. Nothing here knows about HTTP.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

#: States of a job.
STATES = ("queued", "compiling", "running", "done", "stopped", "failed")


@dataclasses.dataclass
class Job:
    """One request and everything the page shows about it."""

    id: str
    kind: str                          # "single", "sweep", "batch" or "train"
    content: str                       # a reference ("example:NAME" / "upload:NAME")
    styles: list[str]
    settings: dict[str, Any]           # the validated form: CLI names -> values
    points: list[dict[str, float]] = dataclasses.field(default_factory=list)  # sweep points
    state: str = "queued"
    step: int = 0
    total: int = 0
    curve: list[dict[str, float]] = dataclasses.field(default_factory=list)  # per report
    cells: list[dict[str, Any]] = dataclasses.field(default_factory=list)    # sweep results
    version: int = 0                   # bumped with every new preview
    compile_s: float | None = None
    first_preview_s: float | None = None
    finished_s: float | None = None      # "Start" to the last report
    it_per_s: float | None = None
    eta_s: float | None = None
    error: str | None = None
    outputs: list[str] = dataclasses.field(default_factory=list)  # file names in the output folder
    submitted: float = dataclasses.field(default_factory=time.time)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)
    preview: bytes | None = dataclasses.field(default=None, repr=False)
    cell_png: list[bytes] = dataclasses.field(default_factory=list, repr=False)

    def public(self) -> dict[str, Any]:
        """What the page receives (JSON-able; images are fetched by URL)."""
        return {k: getattr(self, k) for k in (
            "id", "kind", "content", "styles", "settings", "points", "state", "step", "total",
            "curve", "cells", "version", "compile_s", "first_preview_s", "finished_s", "it_per_s", "eta_s",
            "error", "outputs", "submitted")}


def png_bytes(rgb: np.ndarray, max_side: int | None = None) -> bytes:
    """An ``(H, W, 3)`` image in [0, 1] as PNG bytes (optionally shrunk)."""
    from PIL import Image

    im = Image.fromarray(np.round(np.clip(np.asarray(rgb), 0, 1) * 255).astype(np.uint8))
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


class Studio:
    """The queue, the worker and the jobs. ``runner(job, studio)`` does one job (the
    default: :func:`run_job`); ``changed()`` wakes the event streams."""

    def __init__(self, out_dir: Path, resolve: Any, weights: tuple[Any, Any, dict], *,
                 runner: Any = None, keep: int = 50) -> None:
        self.out_dir = out_dir
        self.resolve = resolve            # reference -> Path of an image file
        self.params, self.spec, self.weights_meta = weights
        self.runner = runner or run_job
        self.jobs: dict[str, Job] = {}
        self.queue: deque[Job] = deque()
        self.current: Job | None = None
        self.version = 0
        self.keep = keep
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="nst_jax-studio", daemon=True)
        self._worker.start()

    def changed(self) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()

    def submit(self, kind: str, content: str, styles: list[str], settings: dict[str, Any],
               points: list[dict[str, float]] | None = None) -> Job:
        job = Job(id=f"j{next(self._ids)}", kind=kind, content=content, styles=styles,
                  settings=settings, points=points or [])
        with self._cond:
            self.jobs[job.id] = job
            self.queue.append(job)
            for old in [j for j in self.jobs.values() if j.state in ("done", "stopped", "failed")][
                    :-self.keep]:
                del self.jobs[old.id]  # keep memory bounded: old previews go
            self.version += 1
            self._cond.notify_all()
        return job

    def position(self, job: Job) -> int | None:
        """1 for the next job to run, None when it is not waiting."""
        with self._cond:
            return next((i + 1 for i, j in enumerate(self.queue) if j is job), None)

    def cancel(self, job: Job) -> None:
        """Stop a running job (it keeps its current image) or drop a waiting one."""
        with self._cond:
            if job in self.queue:
                self.queue.remove(job)
                job.state = "stopped"
            job.stop.set()
            self.version += 1
            self._cond.notify_all()

    def wait(self, version: int, timeout: float) -> int:
        """Block until the version passes ``version`` (or ``timeout``); the new version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != version, timeout=timeout)
            return self.version

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            queue = [j.id for j in self.queue]
            return {"version": self.version, "current": self.current.id if self.current else None,
                    "queue": queue, "jobs": [j.public() for j in self.jobs.values()]}

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self.queue))
                job = self.queue.popleft()
                self.current = job
                job.state = "compiling"
                self.version += 1
                self._cond.notify_all()
            try:
                self.runner(job, self)
                if job.state in ("compiling", "running"):
                    job.state = "stopped" if job.stop.is_set() else "done"
            except Exception as e:  # shown in the page as a message, never a trace
                job.state = "failed"
                job.error = f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e)
            finally:
                with self._cond:
                    self.current = None
                    self.version += 1
                    self._cond.notify_all()


def _config(settings: dict[str, Any], arch: str) -> Any:
    from nst_jax.cli.flags import GROUPS
    from nst_jax.config import Config

    fields = {f.field: settings[f.dest] for flags in GROUPS.values() for f in flags
              if f.field and f.dest in settings}
    fields["style_layers"], fields["style_weights"] = settings["style_layer_names"], settings[
        "style_layer_weights"]
    fields["tile"] = int(settings.get("tile") or 0)
    return Config(**fields).validate(arch)


def _layout(config: Any, settings: dict[str, Any]) -> Any:
    """One device, or ``settings["devices"]``: by tiles with a tile, else by rows."""
    import jax

    from nst_jax.engine import _devices_layout

    n = int(settings.get("devices") or 1)
    return _devices_layout(jax.devices()[:n] if n > 1 else None, config)


def _meta(job: Job, studio: Studio, costs: dict[str, float], status: str, extra: dict) -> dict:
    import jax

    from nst_jax import __version__

    return {"nst_jax": __version__, "jax": jax.__version__, "platform": jax.devices()[0].platform,
            "source": "studio", "status": status, "final_costs": costs, "steps": job.step,
            "settings": {**{k: v for k, v in job.settings.items()
                            if k not in ("style_layer_names", "style_layer_weights")},
                         "content": job.content, "style": job.styles},
            "weights": studio.weights_meta, **extra}


def _save(studio: Studio, stem: str, rgb: np.ndarray, meta: dict) -> str:
    from nst_jax import files
    from nst_jax import image as I

    for i in range(100000):
        path = files.numbered(studio.out_dir / f"{stem}.png", i)
        if path.exists():
            continue
        try:
            I.save_image(path, rgb, meta, overwrite=False)
            return path.name
        except (FileExistsError, I.ImageError) as e:
            if "exists" in str(e):
                continue
            raise
    raise OSError(f"no free name like {stem}.png in {studio.out_dir}")


def run_job(job: Job, studio: Studio) -> None:
    """Load the inputs, run the engine, publish every report, save the result(s)."""
    import jax

    from nst_jax import vgg
    from nst_jax.engine import iterate
    from nst_jax.grid import stack_configs
    from nst_jax.image import load_image
    from nst_jax.layout import Layout

    if job.kind == "batch":
        return run_batch_job(job, studio)
    if job.kind == "train":  # nst-jax train in a child process (nst_jax.studio.models)
        from nst_jax.studio.models import run_train_job

        return run_train_job(job, studio)
    t0 = time.perf_counter()  # "Start" to the first preview: loading, targets, compilation, a chunk
    s = job.settings
    config = _config(s, vgg.arch_of(studio.params))
    content = load_image(studio.resolve(job.content), s["size"])
    styles = [load_image(studio.resolve(r), max(1, round(s["size"] * s["style_scale"])))
              for r in job.styles]
    sweep = job.kind == "sweep"
    from nst_jax.studio.masks import load_guides

    guides = load_guides(studio.resolve, s.get("regions"), s.get("content_mask"), len(styles))
    kw: dict[str, Any] = {"guides": guides, "layout": _layout(config, s)}
    if sweep:
        layout = Layout.of(len(job.points))
        pts = [*job.points, *[job.points[-1]] * (layout.points - len(job.points))]
        kw = {"layout": layout, "point_configs": stack_configs(config, pts), "guides": guides}
    job.total = config.iterations * config.scales
    last = None
    for p in iterate(content, styles, studio.params, studio.spec, config=config,
                     key=jax.random.key(s.get("seed", 0)), style_blend=s.get("style_weights_list"),
                     **kw):
        last = p
        job.step = p.step
        job.compile_s = p.compile_s
        job.state = "running"
        if p.run_steps:
            job.it_per_s = p.run_steps / p.run_s if p.run_s > 0 else None
            job.eta_s = (job.total - p.step) / job.it_per_s if job.it_per_s else None
        if sweep:
            job.cell_png = [png_bytes(p.image[i], 256) for i in range(len(job.points))]
            job.cells = [{"point": pt, "costs": {k: float(np.asarray(v)[i]) for k, v in p.costs.items()}}
                         for i, pt in enumerate(job.points)]
            job.curve.append({"step": p.step, **{k: float(np.mean(np.asarray(v)[:len(job.points)]))
                                                  for k, v in p.costs.items()}})
        else:
            job.preview = png_bytes(p.image)
            job.curve.append({"step": p.step, **{k: float(v) for k, v in p.costs.items()}})
        if job.first_preview_s is None:
            job.first_preview_s = time.perf_counter() - t0
        job.version += 1
        studio.changed()
        job.finished_s = time.perf_counter() - t0
        if job.stop.is_set() or (p.error is not None and not sweep):
            break
    if last is None:
        return
    status = "stopped" if job.stop.is_set() else ("failed" if last.error and not sweep else "done")
    if last.error and not sweep:
        job.error = last.error
    stem = f"studio-{Path(studio.resolve(job.content)).stem}-{Path(studio.resolve(job.styles[0])).stem}"
    if sweep:
        for i, pt in enumerate(job.points):
            costs = job.cells[i]["costs"]
            meta = _meta(job, studio, costs, status, {"point": pt, "sweep": job.id})
            meta["settings"].update(pt)  # this image's own alpha and beta
            name = _save(studio, f"{stem}-a{pt['alpha']:g}_b{pt['beta']:g}", last.image[i], meta)
            job.cells[i]["file"] = name
            job.outputs.append(name)
    else:
        job.outputs.append(_save(studio, stem, last.image,
                                 _meta(job, studio, {k: float(v) for k, v in last.costs.items()}, status,
                                       {"compile_s": job.compile_s})))
    job.state = status
    studio.changed()


def run_batch_job(job: Job, studio: Studio) -> None:
    """A batch (several photos, one style): :func:`nst_jax.batch.iterate_batch`, each
    photo a cell of the page's table, saved as its chunk finishes."""
    import jax

    from nst_jax import vgg
    from nst_jax.batch import iterate_batch
    from nst_jax.image import load_image

    t0 = time.perf_counter()
    s = job.settings
    config = _config(s, vgg.arch_of(studio.params))
    photos = [load_image(studio.resolve(r), s["size"]) for r in s["contents"]]
    styles = [load_image(studio.resolve(r), max(1, round(s["size"] * s["style_scale"]))) for r in job.styles]
    n = len(photos)
    job.points = [{"photo": Path(studio.resolve(r)).name} for r in s["contents"]]
    job.cells = [{"point": pt, "costs": {}} for pt in job.points]
    job.cell_png = [b""] * n
    job.total = config.iterations * config.scales
    style_stem = Path(studio.resolve(job.styles[0])).stem

    def progress(done: int, total: int, p: Any) -> bool:
        job.state, job.step, job.total, job.compile_s = "running", done, total, p.compile_s
        job.curve.append({"step": done, **{k: float(np.mean(np.asarray(v))) for k, v in p.costs.items()}})
        if job.first_preview_s is None:
            job.first_preview_s = time.perf_counter() - t0
        job.version += 1
        studio.changed()
        return job.stop.is_set()

    devices = jax.devices()[: int(s.get("devices") or 1)]
    for results in iterate_batch(photos, styles, studio.params, studio.spec, config=config,
                                 key=jax.random.key(s.get("seed", 0)),
                                 style_blend=s.get("style_weights_list"), devices=devices, callback=progress):
        for i, image, info in results:
            costs = {k: float(v) for k, v in info["costs"].items()}
            job.cell_png[i] = png_bytes(image, 256)
            meta = _meta(job, studio, costs, "done" if info["ok"] else "failed", {"batch": job.id})
            meta["settings"]["content"] = s["contents"][i]
            stem = f"studio-{Path(studio.resolve(s['contents'][i])).stem}-{style_stem}"
            name = _save(studio, stem, image, meta)
            job.cells[i] = {"point": job.points[i], "costs": costs, "file": name}
            job.outputs.append(name)
        job.version += 1
        studio.changed()
    job.finished_s = time.perf_counter() - t0
    job.state = "stopped" if job.stop.is_set() else "done"
    studio.changed()


__all__ = ["STATES", "Job", "Studio", "png_bytes", "run_batch_job", "run_job"]
