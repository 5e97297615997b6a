"""[I/O] Model files and training checkpoints: one msgpack file each, written atomically.

A **model** (``.nstm``) is ``{"format": "nst_jax-model-1", "arch": {...}, "meta": JSON,
"params": {layer: {kernel, bias, scale, shift}}}``; loading checks the format, the
architecture name and every parameter's shape against the skeleton of
:func:`nst_jax.models.johnson.param_shapes`, so a file of another architecture or
version, a truncated file or one for another number of styles is refused with the
first thing that differs.

A **checkpoint** adds the optimizer state (its leaves, in ``jax.tree.leaves`` order,
put back into the structure ``tx.init`` gives) and the step. With the data a pure
function of ``(seed, step)`` (:mod:`nst_jax.models.data`) that is all an exact resume
needs.

Why not Orbax: Orbax earns its keep on sharded multi-gigabyte states written
asynchronously from many hosts. This state is 7 MB (1.7 M float32 parameters, Adam's
two moments), replicated, so one atomic file from process 0 is simpler, needs no
extra dependency, and makes the checkpoint and the shipped model the same format
(``flax.serialization``, as the optimisation's own checkpoints, :mod:`nst_jax.checkpoint`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from nst_jax import files
from nst_jax.models import johnson as J

MODEL_FORMAT = "nst_jax-model-1"
CHECKPOINT_FORMAT = "nst_jax-train-checkpoint-1"


class ModelError(ValueError):
    """A model or checkpoint file cannot be used."""


def _arch_of(d: Any, where: Path) -> J.Arch:
    if not isinstance(d, dict) or d.get("name") != "johnson2016":
        name = d.get("name") if isinstance(d, dict) else d
        raise ModelError(f"{where}: architecture {name!r} is not supported (expected johnson2016)")
    try:
        return J.Arch(width=float(d["width"]), n_styles=int(d["n_styles"]),
                      n_residual=int(d["n_residual"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{where}: bad architecture record ({e})") from None


def _check_params(params: Any, arch: J.Arch, where: Path) -> J.Params:
    expected = J.param_shapes(arch)
    if not isinstance(params, dict):
        raise ModelError(f"{where}: no parameters")
    for layer, shapes in expected.items():
        got = params.get(layer)
        if not isinstance(got, dict):
            raise ModelError(f"{where}: {layer}: missing")
        for name, shape in shapes.items():
            a = got.get(name)
            if not isinstance(a, np.ndarray) or tuple(a.shape) != shape:
                g = tuple(a.shape) if isinstance(a, np.ndarray) else "nothing"
                raise ModelError(f"{where}: {layer}/{name}: expected {shape}, got {g}")
            if a.dtype != np.float32 or not np.all(np.isfinite(a)):
                raise ModelError(f"{where}: {layer}/{name}: expected finite float32 values")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise ModelError(f"{where}: unexpected layers {extra} for {arch.to_dict()}")
    return {k: {n: np.asarray(params[k][n]) for n in v} for k, v in expected.items()}


def _read(path: str | os.PathLike, fmt: str, what: str) -> tuple[dict, Path]:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{what} not found: {p}")
    try:
        state = serialization.msgpack_restore(p.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on damaged input
        raise ModelError(f"{p}: not a readable {what} (truncated or damaged: {type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        got = state.get("format") if isinstance(state, dict) else None
        raise ModelError(f"{p}: not an nst_jax {what} (expected format {fmt}, got {got!r})")
    return state, p


def save_model(path: str | os.PathLike, params: J.Params, arch: J.Arch, meta: dict[str, Any],
               *, overwrite: bool = False) -> Path:
    """Write a model atomically (refusing an existing file unless ``overwrite``)."""
    state = {"format": MODEL_FORMAT, "arch": arch.to_dict(),
             "meta": json.dumps(meta, sort_keys=True, default=str),
             "params": jax.tree.map(np.asarray, params)}
    return files.write_bytes(path, serialization.msgpack_serialize(state), overwrite=overwrite)


def load_model(path: str | os.PathLike) -> tuple[J.Params, J.Arch, dict[str, Any]]:
    """``(params, arch, meta)`` of a file written by :func:`save_model` (or a checkpoint:
    its parameters are a model too)."""
    p = Path(path)
    try:
        state, p = _read(p, MODEL_FORMAT, "model")
    except ModelError as e:
        try:
            state, p = _read(p, CHECKPOINT_FORMAT, "model")
        except ModelError:
            raise e from None
    arch = _arch_of(state.get("arch"), p)
    try:
        meta = json.loads(state.get("meta", "{}"))
    except (TypeError, ValueError):
        raise ModelError(f"{p}: damaged metadata") from None
    return _check_params(state.get("params"), arch, p), arch, meta


def save_checkpoint(path: str | os.PathLike, state: Any, arch: J.Arch, meta: dict[str, Any]) -> Path:
    """Write a :class:`~nst_jax.models.train.TrainState` (and ``meta``: the run's
    settings) atomically, replacing the previous checkpoint."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(state.opt_state)]
    out = {"format": CHECKPOINT_FORMAT, "arch": arch.to_dict(),
           "meta": json.dumps(meta, sort_keys=True, default=str),
           "params": jax.tree.map(np.asarray, state.params),
           "opt_state": {str(i): a for i, a in enumerate(leaves)}, "step": int(state.step)}
    return files.write_bytes(path, serialization.msgpack_serialize(out), overwrite=True)


def load_checkpoint(path: str | os.PathLike, tx: Any) -> tuple[Any, J.Arch, dict[str, Any]]:
    """``(TrainState, arch, meta)`` from :func:`save_checkpoint`; the optimizer state is
    rebuilt in the structure ``tx.init`` gives (a checkpoint of another optimizer is refused)."""
    import jax.numpy as jnp

    from nst_jax.models.train import TrainState

    state, p = _read(path, CHECKPOINT_FORMAT, "checkpoint")
    arch = _arch_of(state.get("arch"), p)
    params = _check_params(state.get("params"), arch, p)
    template = jax.eval_shape(tx.init, params)
    t_leaves, treedef = jax.tree.flatten(template)
    saved = state.get("opt_state") or {}
    leaves = [np.asarray(saved[k]) for k in sorted(saved, key=int)]
    if len(leaves) != len(t_leaves) or any(a.shape != t.shape
                                           for a, t in zip(leaves, t_leaves, strict=False)):
        raise ModelError(f"{p}: the optimizer state does not match this optimizer "
                         f"({len(leaves)} arrays saved, {len(t_leaves)} expected)")
    opt = jax.tree.unflatten(treedef, [jnp.asarray(a, t.dtype)
                                       for a, t in zip(leaves, t_leaves, strict=True)])
    meta = json.loads(state.get("meta", "{}"))
    step = jnp.asarray(state["step"], jnp.int32)
    return TrainState(jax.tree.map(jnp.asarray, params), opt, step), arch, meta


__all__ = ["CHECKPOINT_FORMAT", "MODEL_FORMAT", "ModelError", "load_checkpoint", "load_model",
           "save_checkpoint", "save_model"]
