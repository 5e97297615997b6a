"""[host] One scale's chunks of the compiled loop and the progress events they yield.

:class:`Progress` is what :func:`nst_jax.engine.iterate` yields; ``_Scale.chunks``
runs the chunks of one scale (a report's costs from the next chunk's first evaluation
where that is the same cost at the same image); ``_Tally`` keeps the host's counts,
timings and cost history across scales.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.layout import to_host

Array = jax.Array


@dataclasses.dataclass
class Progress:
    """One report of :func:`iterate`. With a batched :class:`~nst_jax.layout.Layout`
    the per-image fields have a leading axis of points (``image (n, H, W, 3)``, each
    cost ``(n,)``, ``history (n, steps)``, ``evals``/``ok``/``converged`` ``(n,)``)."""

    step: int                    # steps done so far, all scales together
    image: np.ndarray            # the result so far, (H_s, W_s, 3) float32 in [0, 1]
    costs: dict[str, Any]        # total/content/style/tv at ``image`` (unweighted terms)
    history: np.ndarray          # J before each step so far, (step,)
    evals: Any                   # cost+gradient evaluations so far (L-BFGS: > steps)
    compile_s: float             # time of the first call of each scale (compilation included)
    run_s: float                 # time in compiled iterations after those first calls
    run_steps: int               # steps taken in the calls that ``run_s`` times
    finished: bool
    error: str | None = None     # set when a non-finite cost stopped the run (or a point)
    converged: Any = False       # the tolerance test stopped this scale early
    scale: int = 0               # index of the current coarse-to-fine scale
    snapshot: dict[str, Any] | None = None  # with snapshots=True: what resume= needs
    ok: Any = True               # False where a non-finite cost stopped the image
    sharding: Any = None         # where X lived on the devices (batched layouts)


def _snapshot(X: Array, ls: Any, si: int, done: int, p: Progress, key: Array) -> dict[str, Any]:
    """Host copies of everything ``iterate(resume=...)`` needs to continue exactly here."""
    return {"X": to_host(X), "loop_state": [to_host(v) for v in jax.tree.leaves(ls)],
            "scale": si, "step_in_scale": done, "steps": p.step, "evals": p.evals,
            "history": p.history, "key": np.asarray(jax.random.key_data(key))}


@dataclasses.dataclass
class _Scale:
    """One scale's compiled programs and fixed inputs; :meth:`chunks` runs it."""

    progs: Any
    params: Any
    targets: Any
    config: Any          # the config at this scale (split over points when batched)
    content: Array       # the content at this scale, padded to the stored rows
    si: int
    height: int
    last: bool           # the last scale
    key: Array | None    # the run's key when snapshots are wanted, else None
    defer: bool          # reports may take their costs from the next chunk's first evaluation
    stop_on_error: bool  # one image: a non-finite cost ends the run (a batch's other points go on)

    def chunks(self, t: _Tally, X: Array, ls: Any, done: int, chunk: int,
               iterations: int) -> Iterator[Progress]:
        """Run chunks until ``iterations`` steps, convergence or a non-finite cost; one
        :class:`Progress` per chunk. Returns ``(X, ls, stopped by an error)``.

        A report whose image is not the scale's last (and with ``defer``, a first-order
        optimizer, every point live) waits for the next chunk: its costs are that
        chunk's first evaluation, at the same image, instead of a forward pass of their
        own (~5% of the run at a report every 10 steps, VGG16 256 px), so the caller
        sees it one chunk later."""
        first_call, pending = True, None
        while done < iterations and t.alive(ls):
            n = min(chunk, iterations - done)
            t0 = time.perf_counter()
            X, ls, costs, n_evals, n_done, ok, first = self.progs.run(X, ls, self.params, self.targets,
                                                                     self.config, jnp.int32(n))
            n_done = t.record(costs, n_evals, n_done, ok, t0, first_call)
            first_call = False
            done += n_done
            if pending is not None:
                pending.costs = t.host_costs(first)
                yield pending
                pending = None
            if self.defer and first is not None and done < iterations and t.steady(ls):
                image, c = self.progs.show(X, ls, self.content, self.config), None
            else:
                _, image, c = self.progs.measure(X, ls, self.params, self.targets, self.content, self.config)
            p = t.progress(X, ls, image[..., :self.height, :, :], c, self.si, last_scale=self.last,
                           scale_done=done >= iterations)
            if self.key is not None:
                p.snapshot = _snapshot(X, ls, self.si, done, p, self.key)
            del image, c  # device copies: the next chunk's step needs the memory (4096 px: 0.2 GB each)
            if p.costs is None:
                pending = p
                continue
            yield p
            if p.error is not None and self.stop_on_error:
                return X, ls, True
        return X, ls, False


class _Tally:
    """The host side of the loop: steps, evaluations, timings, cost history, status."""

    def __init__(self) -> None:
        self.hist: list[np.ndarray] = []
        self.steps = 0
        self.evals: Any = 0
        self.compile_s = self.run_s = 0.0
        self.run_steps = 0
        self.ok: Any = True

    def resume(self, snapshot: dict[str, Any] | None, key: Array) -> tuple[int, int, Array]:
        """Take over a snapshot's counts and history: ``(scale, step in scale, key)``."""
        if snapshot is None:
            return 0, 0, key
        self.hist = [np.asarray(snapshot["history"], np.float32)]
        self.steps, self.evals = int(snapshot["steps"]), snapshot["evals"]
        return (int(snapshot["scale"]), int(snapshot["step_in_scale"]),
                jax.random.wrap_key_data(jnp.asarray(snapshot["key"], jnp.uint32)))

    @staticmethod
    def alive(ls: Any) -> bool:
        return not bool(np.all(to_host(ls.converged)))

    def steady(self, ls: Any) -> bool:
        """Every point still steps: none stopped by a non-finite cost or converged."""
        return bool(np.all(self.ok)) and not bool(np.any(to_host(ls.converged)))

    def host_costs(self, c: dict[str, Array]) -> dict[str, Any]:
        """The cost terms on the host: floats for one image, arrays over points."""
        return {k: (float(v) if np.ndim(self.ok) == 0 else to_host(v)) for k, v in c.items()}

    def record(self, costs: Array, n_evals: Array, n_done: Array, ok: Array, t0: float,
               first_call: bool) -> int:
        """Read one chunk's results (the host sync: the chunk is timed from ``t0`` to
        here, since the call itself only dispatches); the steps it took (max over points)."""
        steps = int(np.max(to_host(n_done)))
        dt = time.perf_counter() - t0
        if first_call:
            self.compile_s += dt
        else:
            self.run_s += dt
            self.run_steps += steps
        self.steps += steps
        ev = to_host(n_evals)
        self.evals = self.evals + (int(ev) if ev.ndim == 0 else ev)
        self.hist.append(to_host(costs)[..., :steps])
        self.ok = self.ok & to_host(ok)  # a point that failed once stays marked
        return steps

    def progress(self, X: Array, ls: Any, image: Array, c: dict | None, si: int, *, last_scale: bool,
                 scale_done: bool) -> Progress:
        """The report of the chunk just recorded; ``c=None``: its costs come later."""
        ok = np.asarray(self.ok)
        bad = int(np.sum(~ok))
        if ok.ndim == 0:
            error = None if bool(ok) else f"the cost became non-finite at step {self.steps + 1}"
            converged = bool(to_host(ls.converged))
            stopped = converged
        else:
            error = None if bad == 0 else f"the cost became non-finite for {bad} of {ok.size} points"
            converged = to_host(ls.converged)
            stopped = bool(np.all(converged | ~ok))
        finished = (error is not None and ok.ndim == 0) or (last_scale and (scale_done or stopped))
        costs = None if c is None else self.host_costs(c)
        return Progress(self.steps, to_host(image), costs, np.concatenate(self.hist, axis=-1),
                        self.evals, self.compile_s, self.run_s, self.run_steps, finished, error,
                        converged, si, None, ok if ok.ndim else bool(ok),
                        getattr(X, "sharding", None) if ok.ndim else None)
