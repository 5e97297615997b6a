"""[I/O] The studio's trained models: list them, apply one to an image at once, and
train one as a queued job with a live loss curve and previews.

* **Models** are the ``.nstm`` files of ``nst-jax train`` in the output folder and its
  ``models/`` folder (where the studio's own training jobs write them).
* **Apply** runs in the request (in a thread, one at a time), not through the job queue,
  so it is instant even while a long optimisation or a training job runs: the network
  is milliseconds per image once compiled, whole up to 1024 px on a side and tile by
  tile beyond (:func:`nst_jax.models.tiled.apply_tiled`, seamless). The result is saved
  with its metadata like every studio result and shows in the gallery.
* **Training** is ``nst-jax train`` in a child process (``--progress-json``): the
  command line's own driver, data pipeline, checkpoints and previews, with its
  progress lines turned into the job's curve (total, content, style), rate and ETA,
  and its preview file into the job's preview. Stop sends SIGTERM, on which the trainer
  writes a checkpoint (continue it from the command line with ``--resume``). The child
  does not preallocate GPU memory (``XLA_PYTHON_CLIENT_PREALLOCATE=false``), so it can
  share a GPU with the studio.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The largest side applied whole; beyond it, tiles (bounded memory, the same image).
WHOLE_MAX = 1024
#: Style statistics a network is trained with (:func:`nst_jax.models.train.check_config`).
TRAIN_LOSSES = ("gram", "meancov", "w2", "hist")
#: Training settings the form may give: ``(default, lo, hi)``.
TRAIN_FIELDS = {"steps": (200, 1, 100_000), "crop": (128, 32, 512), "batch": (2, 1, 64),
                "width": (0.5, 0.0625, 2.0), "lr": (1e-3, 1e-6, 1.0), "preview_every": (20, 1, 100_000)}


def model_files(out: Path) -> dict[str, Path]:
    """``{name: path}`` of the ``.nstm`` files in ``out`` and ``out/models`` (the name is
    relative to ``out``: ``starry.nstm`` or ``models/starry.nstm``)."""
    found = {}
    for folder, prefix in ((out, ""), (out / "models", "models/")):
        if folder.is_dir():
            for p in sorted(folder.glob("*.nstm")):
                if p.is_file():
                    found[prefix + p.name] = p
    return found


_DESCRIBED: dict[tuple[str, float], dict[str, Any]] = {}


def describe(path: Path) -> dict[str, Any]:
    """What the page shows of a model: its styles, steps, width (``error`` if unreadable);
    read once per file version (path and mtime), not at every listing."""
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError as e:  # removed since it was listed
        return {"error": str(e)}
    if key not in _DESCRIBED:
        _DESCRIBED[key] = _describe(path)
    return _DESCRIBED[key]


def _describe(path: Path) -> dict[str, Any]:
    from nst_jax.models import store

    try:
        _, arch, meta = store.load_model(path)
    except (store.ModelError, OSError) as e:
        return {"error": str(e)}
    return {"styles": meta.get("style_names") or [f"style {i + 1}" for i in range(arch.n_styles)],
            "steps": meta.get("steps"), "width": arch.to_dict().get("width"), "n_styles": arch.n_styles}


def number(form: dict, name: str, default: float, lo: float, hi: float, errors: dict) -> float:
    """``form[name]`` as a finite number in ``[lo, hi]`` (else an entry in ``errors``)."""
    raw = form.get(name, default)
    try:
        v = float(raw)
    except (TypeError, ValueError):
        errors[name] = f"expected a number, got {raw!r}"
        return default
    if not (np.isfinite(v) and lo <= v <= hi):
        errors[name] = f"expected a number from {lo:g} to {hi:g}, got {raw!r}"
        return default
    return v


class Applier:
    """Loads models (cached by path and mtime) and applies them, one call at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache: dict[tuple[str, float], Any] = {}

    def apply(self, path: Path, image: np.ndarray, mix: np.ndarray | None, strength: float) -> tuple[
            np.ndarray, dict[str, Any]]:
        """``(output (H, W, 3), {"seconds", "tiled", "styles", "steps"})``: the network on ``image``,
        its styles mixed by ``mix`` (weights, normalised) and blended with ``strength``."""
        from nst_jax.models import johnson, store
        from nst_jax.models.tiled import apply_tiled

        with self.lock:
            key = (str(path), path.stat().st_mtime)
            if key not in self.cache:
                self.cache = {key: store.load_model(path)}  # one model held at a time
            params, arch, meta = self.cache[key]
            mixed = None if mix is None else np.asarray(mix, np.float32) / np.sum(mix)
            w = johnson.style_weights(arch, mixed)
            t0 = time.perf_counter()
            tiled = max(image.shape[:2]) > WHOLE_MAX
            if tiled:
                out = apply_tiled(params, image, w, arch=arch, strength=strength)
            else:
                out = np.asarray(johnson.apply_jit(params, image, w, arch=arch, strength=strength))
            return out, {"seconds": time.perf_counter() - t0, "tiled": tiled,
                         "styles": meta.get("style_names"), "steps": meta.get("steps")}


def train_command(settings: dict[str, Any], styles: list[Path], data: Path, output: Path,
                  weights: str | None) -> list[str]:
    """The ``nst-jax train`` command line of a studio training job."""
    s = settings
    every = int(s["preview_every"])  # previews and checkpoints; reports at a divisor of it
    cmd = [sys.executable, "-m", "nst_jax", "train", "--data", str(data), "--style", *map(str, styles),
           "-o", str(output), "--steps", str(int(s["steps"])), "--crop", str(int(s["crop"])),
           "--batch", str(int(s["batch"])), "--width", f"{s['width']:g}", "--lr", f"{s['lr']:g}",
           "--preview-every", str(every), "--checkpoint-every", str(every),
           "--report-every", str(math.gcd(10, every)), "--progress-json", "--quiet",
           "--style-loss", str(s.get("style_loss", "gram"))]
    return cmd + (["--weights", weights] if weights else [])


def run_train_job(job: Any, studio: Any) -> None:
    """A training job: ``nst-jax train`` as a child process, its JSON progress lines
    published as the job's curve and its preview file as the job's preview."""
    s = job.settings
    cmd = s["command"]
    job.total = int(s["steps"])
    t0 = time.perf_counter()
    here = str(Path(__file__).resolve().parents[2])  # the child runs this very nst_jax
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          cwd=str(studio.out_dir)) as proc:  # the with closes the pipes
        err: list[str] = []
        drain = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)  # never blocks
        drain.start()
        threading.Thread(target=_stop_on_request, args=(job, proc), daemon=True).start()
        for line in proc.stdout:
            _progress(job, studio, line, int(s["batch"]), t0)
        code = proc.wait()
        drain.join(timeout=5)
    out = Path(s["output"])
    if job.stop.is_set():
        job.state = "stopped"
    elif code != 0:
        job.state = "failed"
        msg = [ln.strip() for ln in err if ln.strip()]
        last = msg[-1] if msg else f"exit {code}"
        job.error = next((m for m in reversed(msg) if m.startswith("error:")), last)
    else:
        job.state = "done"
    if out.is_file():
        job.outputs.append(str(out.relative_to(studio.out_dir)))
    studio.changed()


def _progress(job: Any, studio: Any, line: str, batch: int, t0: float) -> None:
    """One JSON progress line of the trainer into the job (curve, rate, ETA, preview)."""
    try:
        p = json.loads(line)
    except ValueError:
        return
    job.state, job.step = "running", int(p["step"])
    if job.compile_s is None:
        job.compile_s = time.perf_counter() - t0  # set-up, targets, compilation, the first steps
    job.it_per_s = p["images_per_s"] / batch if p.get("images_per_s") else None
    job.eta_s = p.get("eta_s")
    job.curve.append({"step": job.step, **{k: float(v) for k, v in p["terms"].items()}})
    if p.get("preview") and Path(p["preview"]).is_file():
        job.preview = Path(p["preview"]).read_bytes()
        if job.first_preview_s is None:
            job.first_preview_s = time.perf_counter() - t0
    job.version += 1
    job.finished_s = time.perf_counter() - t0
    studio.changed()


def _stop_on_request(job: Any, proc: subprocess.Popen) -> None:
    """SIGTERM the trainer when the job's stop is asked (it checkpoints and exits)."""
    while proc.poll() is None:
        if job.stop.wait(0.2):
            proc.send_signal(signal.SIGTERM)
            return


class ModelRoutes:
    """``GET /api/models``, ``POST /api/apply``, ``POST /api/train``, ``GET /models/{name}``
    on the studio's routes ``r`` (its folders, ``resolve``, job queue and weights)."""

    def __init__(self, r: Any, weights_path: str | None) -> None:
        self.r, self.weights_path, self.applier = r, weights_path, Applier()

    def routes(self) -> list:
        from starlette.routing import Route

        return [Route("/api/models", self.list_models), Route("/api/apply", self.apply, methods=["POST"]),
                Route("/api/train", self.train, methods=["POST"])]

    def _model(self, name: Any) -> Path:
        from nst_jax.studio.http import ApiError

        found = model_files(self.r.out)
        if not isinstance(name, str) or name not in found:
            raise ApiError(404, f"no such model: {name!r} (train one, or put a .nstm file in the output "
                                "folder)", {"model": "choose a model"})
        return found[name]

    async def list_models(self, request: Any) -> Any:
        import asyncio

        from nst_jax.studio.http import Json

        found = model_files(self.r.out)
        infos = await asyncio.to_thread(lambda: {n: describe(p) for n, p in found.items()})
        return Json({"models": [{"name": n, **infos[n]} for n in found]})

    async def apply(self, request: Any) -> Any:
        """Apply a model to ``content`` at ``size`` (longest side), ``strength`` in [0, 1],
        ``mix`` (one weight per style of a conditional model); saves and returns the file."""
        import asyncio

        from nst_jax import image as I
        from nst_jax.studio.http import ApiError, Json, json_form
        from nst_jax.studio.jobs import _save

        form = await json_form(request)
        errors: dict[str, str] = {}
        path = self._model(form.get("model"))
        size = int(number(form, "size", 512, 16, 8192, errors))
        strength = number(form, "strength", 1.0, 0.0, 1.0, errors)
        mix = form.get("mix")
        if mix is not None and not (isinstance(mix, list) and mix and all(
                isinstance(v, int | float) and np.isfinite(v) and v >= 0 for v in mix) and sum(mix) > 0):
            errors["mix"] = "expected one non-negative weight per style, not all 0"
        try:
            src = self.r.resolve(str(form.get("content")))
        except ApiError as e:
            errors["content"] = e.message
        if errors:
            raise ApiError(400, "please fix the highlighted fields", errors)
        try:
            image = await asyncio.to_thread(I.load_image, src, size)
            out, info = await asyncio.to_thread(self.applier.apply, path, image, mix, strength)
        except (I.ImageError, ValueError) as e:  # a bad image, a mix of the wrong length
            raise ApiError(400, str(e)) from None
        meta = {"source": "studio", "status": "done", "model": path.name, "strength": strength, "mix": mix,
                "apply_seconds": round(info["seconds"], 4), "tiled": info["tiled"],
                "settings": {"content": form.get("content"), "size": size, "model": path.name}}
        name = await asyncio.to_thread(_save, self.r.studio, f"studio-{src.stem}-{path.stem}", out, meta)
        return Json({"file": name, **info, "size": [out.shape[1], out.shape[0]]})

    async def train(self, request: Any) -> Any:
        """Queue a training job: the styles (refs), the data (``uploads`` or ``examples``)
        and :data:`TRAIN_FIELDS`; the model goes to ``models/NAME.nstm``."""
        from nst_jax.studio.http import NAME, ApiError, Json, json_form

        form = await json_form(request)
        errors: dict[str, str] = {}
        settings: dict[str, Any] = {k: number(form, k, *v, errors) for k, v in TRAIN_FIELDS.items()}
        for k in ("steps", "crop", "batch", "preview_every"):
            settings[k] = int(settings[k])
        styles = form.get("styles")
        paths = []
        if not (isinstance(styles, list) and styles and all(isinstance(x, str) for x in styles)):
            errors["styles"] = "choose the style image(s)"
        else:
            for ref in styles:
                try:
                    paths.append(self.r.resolve(ref))
                except ApiError as e:
                    errors["styles"] = e.message
        data = {"uploads": self.r.uploads, "examples": self._examples_dir()}.get(str(form.get("data")))
        if data is None:
            errors["data"] = "expected uploads or examples"
        name = str(form.get("name") or (paths[0].stem if paths else "model"))
        if not NAME.match(name) or ".." in name:
            errors["name"] = "letters, digits, . _ - only"
        loss = str(form.get("style_loss") or "gram")
        if loss not in TRAIN_LOSSES:
            errors["style_loss"] = f"expected one of {', '.join(TRAIN_LOSSES)}"
        out = self.r.out / "models" / f"{name}.nstm"
        if out.exists() or any(j.kind == "train" and j.settings.get("output") == str(out)
                               and j.state in ("queued", "compiling", "running")
                               for j in self.r.studio.jobs.values()):
            errors["name"] = f"models/{out.name} exists or is being trained: choose another name"
        if errors:
            raise ApiError(400, "please fix the highlighted fields", errors)
        out.parent.mkdir(parents=True, exist_ok=True)
        settings.update(style_loss=loss, output=str(out), data=str(data))
        settings["command"] = train_command(settings, paths, data, out, self.weights_path)
        job = self.r.studio.submit("train", str(styles[0]), list(styles), settings)
        return Json({"job": job.id, "position": self.r.studio.position(job), "model": f"models/{out.name}"})

    def _examples_dir(self) -> Path | None:
        """A folder of the bundled example photos (their ``content_*`` images, copied once:
        the examples folder also holds styles and masks)."""
        import shutil

        photos = [p for n, p in self.r.examples.items() if n.startswith("content_")]
        if not photos:
            return None
        d = self.r.out / "models" / "example-photos"
        d.mkdir(parents=True, exist_ok=True)
        for p in photos:
            if not (d / p.name).exists():
                shutil.copyfile(p, d / p.name)
        return d


__all__ = ["TRAIN_FIELDS", "WHOLE_MAX", "Applier", "ModelRoutes", "describe", "model_files", "number",
           "run_train_job", "train_command"]
