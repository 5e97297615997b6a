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
    from nst_jax import mrf, vgg
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
    _devices_and_tiles(form, out, errors)
    try:
        spec = str(form.get("style_layers") or ",".join(d.style_layers))
        if out.get("style_loss") == "mrf" and parse_style_layers(spec) == (d.style_layers, d.style_weights):
            spec = ",".join(mrf.DEFAULT_LAYERS)  # the form's default layers: mrf's own, as on the CLI
        names, weights = parse_style_layers(spec)
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


def _devices_and_tiles(form: dict[str, Any], out: dict[str, Any], errors: dict[str, str]) -> None:
    """``tile`` (0: whole), ``devices`` (1 to the count there is) and the mask references."""
    import jax

    for name, lo, hi in (("tile", 0, 8192), ("devices", 1, len(jax.devices()))):
        raw = form.get(name)
        try:
            v = int(raw) if raw not in (None, "") else (0 if name == "tile" else 1)
            if not lo <= v <= hi:
                raise ValueError
            out[name] = v
        except (TypeError, ValueError):
            errors[name] = f"expected a whole number from {lo} to {hi}, got {raw!r}"
    for name in ("regions", "content_mask"):
        ref = form.get(name)
        if ref not in (None, ""):
            if not isinstance(ref, str):
                errors[name] = "expected an uploaded image"
            else:
                out[name] = ref


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
    return _check_masks_and_memory(resolve, arch, c_hw, s_hw, settings)


def _check_masks_and_memory(resolve: Callable[[str], Path], arch: str, c_hw: tuple[int, int],
                            s_hw: list[tuple[int, int]], settings: dict[str, Any]) -> dict[str, str]:
    """The masks as the engine will see them (empty regions named), and the predicted
    memory per device against what is free."""
    from nst_jax import guides as G
    from nst_jax.studio.jobs import _config
    from nst_jax.studio.masks import load_guides, memory_estimate

    config = _config(settings, arch)
    try:
        guides = load_guides(resolve, settings.get("regions"), settings.get("content_mask"), len(s_hw))
        if guides is not None:
            G.at_layers(guides, c_hw, s_hw, config)
    except (OSError, ValueError) as e:
        return {"content_mask" if "content mask" in str(e) else "regions": str(e)}
    est = memory_estimate(arch, c_hw, config, int(settings.get("devices") or 1))
    if not est["fits"]:
        return {"tile": f"about {est['predicted'] / 2**30:.1f} GiB per device predicted but "
                        f"{est['available'] / 2**30:.1f} GiB free: set a tile (e.g. 512) or lower the size"}
    return {}


__all__ = ["check_job", "parse_settings"]
