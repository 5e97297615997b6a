"""[I/O] The studio's web layer: Starlette routes, Server-Sent Events, plain HTML/JS.

Why Starlette + uvicorn rather than Gradio: the page needs a live preview that
several tabs watch at once, a job queue shared by everyone, and a gallery read
from the output folder. With Starlette these are a few small routes: one SSE stream
(``text/event-stream``) broadcasts every job's state, images are plain PNG URLs, and
the page is one static HTML file with no build step. Gradio's per-session event
queue and component model would have to be worked around for the shared live run
and the gallery, and it pulls in a large dependency tree.

Safety: uploads are raw image bytes, limited in bytes and in pixels, identified by
Pillow and stored under a content hash (client file names are never used as paths);
every file a request names must be one the studio listed, matched against a strict
pattern and resolved inside its folder; ``auth_token`` guards every route (header,
cookie or ``?token=``); errors are JSON messages, never tracebacks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from nst_jax.studio.forms import check_job, parse_settings
from nst_jax.studio.http import NAME, ApiError, Json, dumps, finite, inside, json_form, safe_name  # noqa: F401
from nst_jax.studio.jobs import Studio
from nst_jax.studio.models import ModelRoutes

log = logging.getLogger("nst_jax.studio")
STATIC = Path(__file__).resolve().parent / "static"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _examples() -> dict[str, Path]:
    if not EXAMPLES.is_dir():
        return {}
    return {p.name: p for p in sorted(EXAMPLES.iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(("mask", "labels"))}


class _Routes:
    """The studio's state (folders, examples, the job queue) and one method per route."""

    def __init__(self, out_dir: str | Path, params: Any, spec: Any, weights_meta: dict, *,
                 max_upload_bytes: int, max_pixels: int, runner: Any, max_store_bytes: int = 1 << 30
                 ) -> None:
        from nst_jax import vgg

        self.out = Path(out_dir)
        self.uploads = self.out / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.examples = _examples()
        self.arch = vgg.arch_of(params)
        self.max_upload_bytes, self.max_pixels = max_upload_bytes, max_pixels
        self.max_store_bytes = max_store_bytes
        self.studio = Studio(self.out, self.resolve, (params, spec, weights_meta), runner=runner)
        self.thumbs: dict[tuple[str, float], bytes] = {}
        self.lock = threading.Lock()

    def resolve(self, ref: str) -> Path:
        """The image file of a reference: ``example:NAME`` or ``upload:NAME``."""
        kind, _, name = ref.partition(":")
        if kind == "example" and name in self.examples:
            return self.examples[name]
        if kind == "upload":
            return inside(self.uploads, name)
        raise ApiError(422, f"unknown image {ref!r}: choose an example or upload a file")

    async def index(self, request: Request) -> Response:
        return HTMLResponse((STATIC / "index.html").read_text())

    async def static(self, request: Request) -> Response:
        return FileResponse(inside(STATIC, request.path_params["name"]))

    async def meta(self, request: Request) -> Response:
        from nst_jax.cli.flags import GROUPS, _choices
        from nst_jax.config import Config

        d = Config()
        fields = []
        for title, flags in GROUPS.items():
            for f in flags:
                if f.action or f.nargs or f.dest in ("tile", "device", "weights", "mask_colors",
                                                      "content_mask", "mask_resize", "bit_depth"):
                    continue
                default = getattr(d, f.field) if f.field else f.default
                if f.dest == "style_layers":
                    default = ",".join(f"{n}:{v:g}" for n, v in zip(d.style_layers, d.style_weights,
                                                                      strict=True))
                if f.dest == "size":
                    default = 256
                choices = _choices(f.choices) if isinstance(f.choices, str) else f.choices
                fields.append({"name": f.dest, "group": title.split(" (")[0], "help": f.help,
                               "default": default, "choices": list(choices) if choices else None})
        import jax

        from nst_jax.studio.masks import PALETTE

        return Json({"fields": fields, "examples": list(self.examples), "arch": self.arch,
                             "uploads": sorted(p.name for p in self.uploads.iterdir() if NAME.match(p.name)),
                             "max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels,
                             "max_store_bytes": self.max_store_bytes, "palette": PALETTE,
                             "devices": len(jax.devices())})

    async def upload(self, request: Request) -> Response:
        from PIL import Image

        size = request.headers.get("content-length")
        if size is not None and int(size) > self.max_upload_bytes:
            raise ApiError(413, f"upload too large: {int(size)} bytes, the limit is {self.max_upload_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_upload_bytes:
                raise ApiError(413, f"upload too large: over {self.max_upload_bytes} bytes")
        try:
            with Image.open(io.BytesIO(bytes(body))) as im:
                w, h = im.size
                fmt = (im.format or "").lower()
                if w * h > self.max_pixels:
                    raise ApiError(413, f"image too large: {w}x{h} pixels, the limit is {self.max_pixels}")
                im.load()
        except ApiError:
            raise
        except Image.DecompressionBombError:  # Pillow refuses it before we see its size
            raise ApiError(413, f"image too large: over Pillow's decompression-bomb limit, far past "
                                f"this studio's {self.max_pixels} pixels") from None
        except Exception:
            raise ApiError(415, "not an image (PNG, JPEG or WebP expected)") from None
        ext = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}.get(fmt)
        if ext is None:
            raise ApiError(415, f"unsupported image format {fmt or '?'} (PNG, JPEG or WebP expected)")
        name = hashlib.sha256(bytes(body)).hexdigest()[:20] + ext
        (self.uploads / name).write_bytes(bytes(body))
        from nst_jax.studio.masks import prune_uploads

        busy = {name} | {r.partition(":")[2] for j in self.studio.jobs.values()
                         if j.state in ("queued", "compiling", "running")
                         for r in (j.content, *j.styles, j.settings.get("regions") or "",
                                   j.settings.get("content_mask") or "", *j.settings.get("contents", []))}
        removed = prune_uploads(self.uploads, self.max_store_bytes, busy)
        if removed:
            log.info("upload store over %d bytes: removed %d oldest upload(s)", self.max_store_bytes,
                     len(removed))
        return Json({"ref": f"upload:{name}", "name": name, "size": [w, h]})

    async def submit(self, request: Request) -> Response:
        form = await json_form(request)
        settings, errors = parse_settings(form, self.arch)
        content, styles = form.get("content"), form.get("styles")
        if styles is None:
            styles = []
        if not isinstance(styles, list):
            errors["styles"] = f"expected a list of images, got {type(styles).__name__}"
            styles = []
        for field, refs in (("content", [content]), ("styles", styles)):
            if field in errors:
                continue
            if not refs or not all(isinstance(r, str) for r in refs):
                errors[field] = "choose an image"
                continue
            for r in refs:
                try:
                    self.resolve(r)
                except ApiError as e:
                    errors[field] = e.message
        if not errors:
            errors.update(check_job(self.resolve, self.arch, content, styles, settings))
        kind = form.get("mode", "single")
        points: list[dict[str, float]] = []
        if kind == "sweep":
            from nst_jax.cli.common import CliError, parse_numbers

            axes = {}
            for name in ("alphas", "betas"):
                try:
                    axes[name] = parse_numbers(name, str(form.get(name) or "")) or []
                    if not axes[name]:
                        raise CliError("expected a list of numbers, e.g. 1e-4,1e-3")
                except CliError as e:
                    errors[name] = str(e)
            if not errors:
                points = [{"alpha": a, "beta": b} for a in axes["alphas"] for b in axes["betas"]]
                if len(points) > 64:
                    errors["betas"] = f"{len(points)} points: at most 64 per sweep"
        elif kind == "batch":
            contents = form.get("contents")
            if not (isinstance(contents, list) and contents and all(isinstance(c, str) for c in contents)):
                errors["contents"] = "choose the photos of the batch"
            elif len(contents) > 64:
                errors["contents"] = f"{len(contents)} photos: at most 64 per batch"
            elif settings.get("regions") or settings.get("content_mask"):
                errors["regions"] = "regions and masks belong to one photo, not to a batch"
            else:
                for c in contents:
                    try:
                        self.resolve(c)
                    except ApiError as e:
                        errors["contents"] = e.message
                settings["contents"] = list(contents)
        elif kind != "single":
            errors["mode"] = "expected single, sweep or batch"
        if errors:
            raise ApiError(400, "please fix the highlighted fields", errors)
        job = self.studio.submit(kind, content, list(styles), settings, points)
        return Json({"job": job.id, "position": self.studio.position(job)})

    async def estimate(self, request: Request) -> Response:
        """The predicted memory per device of the form's job, before it starts."""
        from nst_jax import image as I
        from nst_jax.studio.jobs import _config
        from nst_jax.studio.masks import memory_estimate

        try:
            form = await request.json()
        except Exception:
            raise ApiError(400, "expected a JSON body") from None
        settings, errors = parse_settings(form if isinstance(form, dict) else {}, self.arch)
        if errors:
            raise ApiError(400, "please fix the highlighted fields", errors)
        try:
            hw = I.image_shape(self.resolve(str(form.get("content"))), settings["size"])
        except I.ImageError as e:
            raise ApiError(400, str(e), {"content": str(e)}) from None
        n = len(form.get("contents") or []) if form.get("mode") == "batch" else 1
        return Json(memory_estimate(self.arch, hw, _config(settings, self.arch), settings["devices"],
                                    points=max(n, 1)))

    def job_of(self, request: Request) -> Any:
        job = self.studio.jobs.get(request.path_params["job"])
        if job is None:
            raise ApiError(404, f"no such job: {request.path_params['job']!r}")
        return job

    async def get_job(self, request: Request) -> Response:
        job = self.job_of(request)
        return Json({**job.public(), "position": self.studio.position(job)})

    async def stop(self, request: Request) -> Response:
        job = self.job_of(request)
        self.studio.cancel(job)
        return Json({"job": job.id, "state": job.state})

    async def preview(self, request: Request) -> Response:
        job = self.job_of(request)
        if job.preview is None:
            raise ApiError(404, "no preview yet")
        return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def cell(self, request: Request) -> Response:
        job = self.job_of(request)
        i = request.path_params["i"]
        if not 0 <= i < len(job.cell_png) or not job.cell_png[i]:
            raise ApiError(404, "no such cell")
        return Response(job.cell_png[i], media_type="image/png", headers={"Cache-Control": "no-store"})

    async def events(self, request: Request) -> Response:
        async def stream():
            version = -1
            while True:
                snap = self.studio.snapshot()
                if snap["version"] != version:
                    version = snap["version"]
                    yield f"data: {dumps(snap)}\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.to_thread(self.studio.wait, version, 1.0)
                yield ": keep-alive\n\n" if self.studio.version == version else ""

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def gallery(self, request: Request) -> Response:
        """The finished images in the output folder, newest first. A file that cannot be
        listed (a dangling link, a sidecar that is not a JSON object, anything) is
        skipped and logged: no file in the folder can make the gallery fail."""
        found = []
        for p in self.out.glob("*.png"):
            if not NAME.match(p.name):
                continue
            try:
                if not p.is_file():
                    raise OSError("not a regular file (a dangling link?)")
                found.append((p.stat().st_mtime, p))
            except OSError as e:
                log.warning("gallery: skipping %s: %s", p.name, e)
        items = []
        for mtime, p in sorted(found, key=lambda t: t[0], reverse=True)[:500]:
            side = p.with_name(p.name + ".json")
            info: dict[str, Any] = {}
            try:
                if side.exists():
                    info = json.loads(side.read_text())
                    if not isinstance(info, dict):
                        raise ValueError(f"expected a JSON object, got {type(info).__name__}")
                    for k in ("settings", "final_costs"):
                        if not isinstance(info.get(k, {}), dict):
                            raise ValueError(f"{k}: expected an object")
            except (OSError, ValueError) as e:
                log.warning("gallery: %s: sidecar ignored: %s", p.name, e)
                info = {}
            items.append({"name": p.name, "mtime": mtime, "status": info.get("status"),
                          "settings": info.get("settings", {}), "costs": info.get("final_costs", {}),
                          "source": info.get("source", "cli")})
        return Json({"items": items})

    async def file(self, request: Request) -> Response:
        p = inside(self.out, request.path_params["name"])
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".json"):
            raise ApiError(404, "no such file")
        return FileResponse(p, filename=p.name)

    async def thumb(self, request: Request) -> Response:
        from PIL import Image

        p = inside(self.out, request.path_params["name"])
        key = (p.name, p.stat().st_mtime)
        with self.lock:
            data = self.thumbs.get(key)
        if data is None:
            try:
                with Image.open(p) as im:
                    im.thumbnail((192, 192))
                    buf = io.BytesIO()
                    im.convert("RGB").save(buf, "PNG")
                    data = buf.getvalue()
            except Exception:
                raise ApiError(404, "not an image") from None
            with self.lock:
                self.thumbs[key] = data
        return Response(data, media_type="image/png")

    async def example(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.examples:
            raise ApiError(404, f"no such example: {name!r}")
        return FileResponse(self.examples[name])

    async def uploaded(self, request: Request) -> Response:
        return FileResponse(inside(self.uploads, request.path_params["name"]))


def create_app(out_dir: str | Path, params: Any, spec: Any, weights_meta: dict, *,
               auth_token: str | None = None, max_upload_bytes: int = 20 << 20,
               max_pixels: int = 40_000_000, runner: Any = None,
               max_store_bytes: int = 1 << 30) -> Starlette:
    """The studio's ASGI app: results and uploads under ``out_dir``; the uploads folder is
    kept under ``max_store_bytes``, the oldest uploads removed first (never an input of
    a queued or running job).

    Raises:
      ValueError: an ``auth_token`` of anything but ASCII letters, digits and ``. _ ~ -``
        (it travels unquoted in a URL, a header and a cookie).
    """
    if auth_token is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{1,256}", auth_token):
        raise ValueError("auth_token: expected printable ASCII letters, digits and . _ ~ - (at most "
                         "256; e.g. --auth-token auto)")
    r = _Routes(out_dir, params, spec, weights_meta, max_upload_bytes=max_upload_bytes,
                max_store_bytes=max_store_bytes,
                max_pixels=max_pixels, runner=runner)
    routes = [
        Route("/", r.index), Route("/static/{name}", r.static), Route("/api/meta", r.meta),
        Route("/api/upload", r.upload, methods=["POST"]), Route("/api/jobs", r.submit, methods=["POST"]),
        Route("/api/estimate", r.estimate, methods=["POST"]),
        Route("/api/jobs/{job}", r.get_job), Route("/api/jobs/{job}/stop", r.stop, methods=["POST"]),
        Route("/api/jobs/{job}/preview.png", r.preview), Route("/api/jobs/{job}/cells/{i:int}.png", r.cell),
        Route("/api/events", r.events), Route("/api/gallery", r.gallery), Route("/files/{name}", r.file),
        Route("/thumbs/{name}", r.thumb), Route("/examples/{name}", r.example),
        Route("/uploads/{name}", r.uploaded),
        *ModelRoutes(r, weights_meta.get("path")).routes(),  # trained models: list, apply, train
    ]

    async def api_error(request: Request, exc: ApiError) -> Response:
        return Json({"error": exc.message, "fields": exc.fields}, status_code=exc.status)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        """Unknown routes (404) and wrong methods (405) answer in JSON like every error."""
        msg = {404: f"no such route: {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code,
                                                                                  str(exc.detail))
        return Json({"error": msg}, status_code=exc.status_code, headers=exc.headers)

    async def any_error(request: Request, exc: Exception) -> Response:
        return Json({"error": f"internal error ({type(exc).__name__})"}, status_code=500)

    middleware = [Middleware(_Auth, token=auth_token)] if auth_token else []
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={ApiError: api_error, HTTPException: http_error,
                                        Exception: any_error})
    app.state.studio = r.studio
    return app


class _Auth(BaseHTTPMiddleware):
    """Every request needs the token: ``Authorization: Bearer T``, the ``nst_token``
    cookie, or ``?token=T`` (which sets the cookie, so the page's own requests pass)."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        given = [request.headers.get("authorization", "").removeprefix("Bearer ").strip(),
                 request.cookies.get("nst_token", ""), request.query_params.get("token", "")]
        want = self.token.encode("utf-8")
        if not any(g and hmac.compare_digest(g.encode("utf-8", "surrogateescape"), want) for g in given):
            return Json({"error": "unauthorized: this studio needs its token "
                                          "(open the URL it printed)"}, status_code=401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie("nst_token", self.token, httponly=True, samesite="strict")
        return response


__all__ = ["ApiError", "create_app", "inside", "parse_settings", "safe_name"]
