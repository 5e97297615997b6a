"""[I/O] The studio's HTTP helpers: strict JSON, API errors, safe file names."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (a cost that overflowed) as ``None``, so that
    no ``Infinity``/``NaN`` (which JSON has not, and the page's ``JSON.parse`` rejects)
    ever reaches a client."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Strict JSON (``allow_nan=False``) of :func:`finite` ``(obj)``."""
    return json.dumps(finite(obj), allow_nan=False, default=str)


class Json(JSONResponse):
    """Starlette's JSONResponse through :func:`finite`."""

    def render(self, content: Any) -> bytes:
        return super().render(finite(content))


class ApiError(Exception):
    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or {}


async def json_form(request: Any) -> dict:
    """The request's JSON body as an object (else a 400 :class:`ApiError`)."""
    try:
        form = await request.json()
    except Exception:
        raise ApiError(400, "expected a JSON body") from None
    if not isinstance(form, dict):
        raise ApiError(400, "expected a JSON object")
    return form


def safe_name(name: str) -> str:
    """A bare file name of letters, digits, ``.``, ``_``, ``-`` (no folders, no ``..``)."""
    if not NAME.match(name or "") or ".." in name:
        raise ApiError(404, f"no such file: {name!r}")
    return name


def inside(folder: Path, name: str) -> Path:
    """``folder / name`` for a :func:`safe_name`, checked to resolve inside ``folder``."""
    p = (folder / safe_name(name)).resolve()
    if p.parent != folder.resolve() or not p.is_file():
        raise ApiError(404, f"no such file: {name!r}")
    return p


__all__ = ["NAME", "ApiError", "Json", "dumps", "finite", "inside", "json_form", "safe_name"]
