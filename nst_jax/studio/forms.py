"""[I/O] The studio's form: a job's settings typed and checked like the command line's
flags (the one flag table), and what the engine would refuse found before queueing.
Nothing here knows about HTTP: errors come back as ``{field: message}``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def parse_settings(form: dict[str, Any], arch: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values, typed and checked like the command line's flags:
    ``(settings, {field: message})``."""
    from nst_jax import vgg
    from nst_jax.cli.common import CliError, parse_numbers, parse_style_layers
    from nst_jax.cli.flags import GROUPS, _choices
    from nst_jax.config import Config

    d = Config()
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for flags in GROUPS.values():
        for f in flags:
            if f.dest not in form or f.action or f.nargs or f.dest in ("tile", "device", "weights"):
                continue
            raw = form[f.dest]
            if raw in (None, ""):
                continue
            try:
                v = f.type(str(raw)) if f.type else str(raw)
                choices = _choices(f.choices) if isinstance(f.choices, str) else f.choices
                if choices and v not in choices:
                    raise ValueError(f"expected one of {', '.join(map(str, choices))}")
                out[f.dest] = v
            except Exception as e:
                errors[f.dest] = str(e).replace("argument ", "")
    for name, default in (("size", 256), ("style_scale", 1.0), ("seed", 0)):
        out.setdefault(name, default)
    for f in (f for flags in GROUPS.values() for f in flags if f.field):
        out.setdefault(f.dest, getattr(d, f.field))
    if out["size"] > 2048:
        errors["size"] = "at most 2048 px in the studio"
    try:
        names, weights = parse_style_layers(str(form.get("style_layers") or ",".join(d.style_layers)))
        out["style_layer_names"], out["style_layer_weights"] = names, weights
        for n in names:
            vgg.canonical_layer(n, arch)
    except (CliError, ValueError) as e:
        errors["style_layers"] = str(e)
    try:
        vgg.canonical_layer(out["content_layer"], arch)
    except ValueError as e:
        errors["content_layer"] = str(e)
    if not errors:
        try:
            from nst_jax.studio.jobs import _config

            _config(out, arch)
        except ValueError as e:
            field = str(e).split(":")[0]
            errors[field if field in out else "form"] = str(e)
    if form.get("style_weights"):
        try:
            out["style_weights_list"] = parse_numbers("style_weights", str(form["style_weights"]))
        except CliError as e:
            errors["style_weights"] = str(e)
    return out, errors


def check_job(resolve: Callable[[str], Path], arch: str, content: str, styles: list[str],
              settings: dict[str, Any]) -> dict[str, str]:
    """What the engine would refuse, found before the job is queued: the count of
    style weights, and the image sizes at the first scale (from the headers).
    ``resolve`` maps an image reference to its file; returns ``{field: message}``."""
    from nst_jax import image as I
    from nst_jax.scales import check_sizes
    from nst_jax.studio.jobs import _config

    blend = settings.get("style_weights_list")
    if blend is not None:
        if len(blend) != len(styles):
            return {"style_weights": f"expected {len(styles)} weights (one per style image), "
                                     f"got {len(blend)}"}
        if sum(blend) <= 0:
            return {"style_weights": "expected weights with a positive sum"}
    size = settings["size"]
    try:
        c_hw = I.image_shape(resolve(content), size)
        s_hw = [I.image_shape(resolve(r), max(1, round(size * settings["style_scale"])))
                for r in styles]
        check_sizes((*c_hw, 3), [(*hw, 3) for hw in s_hw], arch, _config(settings, arch),
                    names=["content image", "style image"])
    except I.ImageError as e:
        return {"content": str(e)}
    except ValueError as e:
        field = "scales" if "first scale" in str(e) else ("style_scale" if "style" in str(e)
                                                         else "size")
        return {field: str(e)}
    return {}


__all__ = ["check_job", "parse_settings"]
