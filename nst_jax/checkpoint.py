"""[I/O] Checkpoints of a run: ``Progress.snapshot`` plus the settings, in one msgpack file.

A checkpoint holds X, the loop state (optimizer state: Adam moments or L-BFGS memory;
the running average; the step count; the cost window), the scale index, the step,
the cost history and the PRNG key data, serialised with ``flax.serialization``
(msgpack), and the run's settings as JSON so a resume can check it continues the
same run. Written atomically (temp file, then rename). A grid's checkpoint
(:func:`save_grid_checkpoint`) holds the finished chunks' results and the current
chunk's snapshot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

from nst_jax import files

FORMAT = "nst_jax-checkpoint-1"
GRID_FORMAT = "nst_jax-grid-checkpoint-1"
#: What :func:`nst_jax.optimize.iterate` needs from a snapshot to resume.
SNAPSHOT_KEYS = frozenset({"X", "loop_state", "scale", "step_in_scale", "steps", "evals",
                           "history", "key"})


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not belong to this run."""


def save_checkpoint(path: str | os.PathLike, snapshot: dict[str, Any],
                    settings: dict[str, Any]) -> Path:
    """Write ``{"format", "settings" (JSON text), "snapshot"}`` atomically to ``path``."""
    snap = dict(snapshot)
    leaves = snap.pop("loop_state")
    snap["loop_state"] = {str(i): np.asarray(v) for i, v in enumerate(leaves)}
    state = {"format": FORMAT, "settings": json.dumps(settings, sort_keys=True, default=str),
             "snapshot": serialization.to_state_dict(snap)}
    data = serialization.msgpack_serialize(state)
    return files.write_bytes(path, data, overwrite=True)


def _read_state(p: Path, fmt: str) -> dict[str, Any]:
    """The msgpack state of checkpoint ``p``, which must be of format ``fmt``."""
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        state = serialization.msgpack_restore(p.read_bytes())
    except Exception as e:
        raise CheckpointError(f"{p}: not a readable checkpoint ({e})") from None
    got = state.get("format") if isinstance(state, dict) else None
    if got != fmt:
        other = {GRID_FORMAT: "a grid checkpoint (resume it with nst-jax grid --resume)",
                 FORMAT: "a single-image checkpoint (resume it with stylize --resume)"}
        raise CheckpointError(f"{p}: " + other.get(got, f"not an nst_jax checkpoint (expected format {fmt})"))
    return state


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(snapshot, settings)`` from a file written by :func:`save_checkpoint`.

    The snapshot's loop state is stored as its list of leaves (``jax.tree.leaves``
    order); :func:`nst_jax.optimize.iterate` puts them back into a fresh
    :class:`~nst_jax.optimize.LoopState` of the same structure.
    """
    p = Path(path)
    state = _read_state(p, FORMAT)
    snap = state.get("snapshot")
    missing = sorted(SNAPSHOT_KEYS - set(snap)) if isinstance(snap, dict) else ["snapshot"]
    if missing:
        raise CheckpointError(f"{p}: damaged checkpoint (missing {', '.join(missing)})")
    try:
        ls = snap["loop_state"]
        snap["loop_state"] = [np.asarray(ls[k]) for k in sorted(ls, key=int)]
        settings = json.loads(state["settings"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{p}: damaged checkpoint ({type(e).__name__}: {e})") from None
    return snap, settings



def _pack_engine(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    if snapshot is None:
        return {}
    snap = dict(snapshot)
    snap["loop_state"] = {str(i): np.asarray(v) for i, v in enumerate(snap.pop("loop_state"))}
    return snap


def save_grid_checkpoint(path: str | os.PathLike, grid: dict[str, Any], settings: dict[str, Any]) -> Path:
    """Write a grid's state (:func:`nst_jax.grid.stylize_grid`'s ``on_snapshot``):
    ``{"chunk", "finished": [part, ...], "engine": snapshot of the current chunk or None}``,
    with the settings as JSON, atomically to ``path``."""
    state = {"format": GRID_FORMAT, "settings": json.dumps(settings, sort_keys=True, default=str),
             "chunk": int(grid["chunk"]),
             "finished": {str(i): serialization.to_state_dict(p) for i, p in enumerate(grid["finished"])},
             "engine": serialization.to_state_dict(_pack_engine(grid["engine"]))}
    return files.write_bytes(path, serialization.msgpack_serialize(state), overwrite=True)


def load_grid_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(grid state, settings)`` from a file written by :func:`save_grid_checkpoint`."""
    p = Path(path)
    state = _read_state(p, GRID_FORMAT)
    try:
        eng = state["engine"] or None
        if eng is not None:
            missing = sorted(SNAPSHOT_KEYS - set(eng))
            if missing:
                raise KeyError(", ".join(missing))
            ls = eng["loop_state"]
            eng["loop_state"] = [np.asarray(ls[k]) for k in sorted(ls, key=int)]
        fin = state["finished"]
        grid = {"chunk": int(state["chunk"]), "engine": eng,
                "finished": [fin[k] for k in sorted(fin, key=int)]}
        settings = json.loads(state["settings"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{p}: damaged checkpoint ({type(e).__name__}: {e})") from None
    return grid, settings
