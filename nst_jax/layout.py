"""[device plumbing] How a run's state is laid out: one image, or many along a leading axis.

The engine's loop (:func:`nst_jax.engine.iterate`) is written once; a :class:`Layout`
says what differs:

- ``Layout()``: one image; X ``(H, W, C)``, the config's loss weights are scalars.
- ``Layout(points=n)``: ``n`` images optimised at once by one ``jax.vmap``-ed program
  (a grid of loss weights, a batch); X ``(n, H, W, C)``, the loss weights ``(n,)``. The
  leading axis is sharded over ``devices`` (``NamedSharding(mesh, P("points"))``;
  params and targets replicated), ``n`` a multiple of the device count. On several
  hosts (after ``jax.distributed.initialize``) the devices span all of them and host
  reads gather the pieces (:func:`to_host`).
- ``Layout.by_rows()``: one image split along its height over the devices.
- ``Layout.over_tiles()``: one tiled image (``Config.tile``), everything replicated,
  its tiles spread over the devices inside the step (:func:`spread_tiles`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nst_jax import vgg
from nst_jax.problem import output_image
from nst_jax.step import averaged, make_run, make_run_fn

Array = jax.Array


def to_host(x: Array) -> np.ndarray:
    """``x`` as one NumPy array on every process: ``np.asarray`` when this process holds
    all of it, else ``multihost_utils.process_allgather`` (``x`` spans several hosts)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


class Programs(NamedTuple):
    """The compiled programs of a run (see :meth:`Layout.programs`).

    ``run(X, ls, params, targets, config, n) -> (X, ls, costs, evals, done, ok, first)``:
    :func:`nst_jax.step.make_run_fn` with ``first_terms``; ``measure(X, ls, params,
    targets, content, config) -> (Xr, image, terms)``: the result X (averaged), its
    output image and the objective's terms (one forward pass); ``show(X, ls, content,
    config) -> image``: the output image alone (no network)."""

    run: Callable
    measure: Callable
    show: Callable


def _measure_fn(spec: vgg.Preprocessing, objective_fn: Callable) -> Callable:
    def measure(X, ls, params, targets, content, config):
        Xr = averaged(X, ls, config)
        return Xr, output_image(Xr, content, config), objective_fn(Xr, params, targets, config, spec)[1]

    return measure


def _show(X, ls, content, config):
    return output_image(averaged(X, ls, config), content, config)


@functools.lru_cache(maxsize=16)
def single_programs(tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int,
                    objective_fn: Callable, static_trip: bool = False) -> Programs:
    """The jitted run and measurement of one image, built once per optimizer, objective,
    chunk length and loop form (the cache keys on them), so repeated runs reuse them.

    The run is the fused loop (``static_trip``: see :func:`nst_jax.step.make_run_fn`),
    for every optimizer. L-BFGS on CPU used to run a host loop of single steps: while
    the loop's guard selected between the old and the new optimizer state, the fused
    loop copied L-BFGS's history every step, and ``bench_step`` once measured it up
    to 1.8x slower. With the guard a conditional (:func:`nst_jax.step._if_finite`) the
    fused loop is as fast or faster than the host loop (``bench_run``, VGG16 256 px,
    150 iterations, warm, two rounds: 0.297 / 0.334 against 0.335 / 0.343 s/iteration
    with 100 pairs, 0.302 / 0.302 against 0.331 / 0.301 with 10; the same J;
    benchmarks/README.md "The step's guard")."""
    run = make_run(tx, spec, chunk, fused=True, objective=objective_fn, static_trip=static_trip,
                   first_terms=True)
    return Programs(run, jax.jit(_measure_fn(spec, objective_fn)), jax.jit(_show))


@functools.lru_cache(maxsize=16)
def vmapped_programs(tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int,
                     objective_fn: Callable, per_point: bool = False,
                     static_trip: bool = False) -> Programs:
    """The run and measurement ``jax.vmap``-ed over the leading axis of X, the loop state
    and the config's loss weights (params, targets and the content shared; with
    ``per_point``, targets and content have the leading axis too: a batch of photos),
    jitted once; X and the state donated. Always the fused loop (L-BFGS too: vmap of
    its line search's while loop runs each point's line search to its own end)."""
    t = 0 if per_point else None
    run = jax.jit(jax.vmap(make_run_fn(tx, spec, chunk, objective=objective_fn, static_trip=static_trip,
                                       first_terms=True),
                           in_axes=(0, 0, None, t, 0, None)), donate_argnums=(0, 1))
    measure = jax.jit(jax.vmap(_measure_fn(spec, objective_fn), in_axes=(0, 0, None, t, t, 0)))
    return Programs(run, measure, jax.jit(jax.vmap(_show, in_axes=(0, 0, t, 0))))


@functools.lru_cache(maxsize=32)
def trimmed(objective_fn: Callable, height: int) -> Callable:
    """``objective_fn`` of the first ``height`` rows of X: the rows-sharded layout pads X
    to a multiple of the device count; the padding gets no gradient, so it never moves."""
    def objective(X, params, targets, config, spec):
        return objective_fn(X[:height], params, targets, config, spec)

    return objective


@functools.lru_cache(maxsize=32)
def spread_tiles(objective_fn: Callable, devices: tuple[Any, ...]) -> Callable:
    """``objective_fn`` whose tiled problems spread their tiles over ``devices``
    (:func:`nst_jax.tiling.over_devices`, entered while the step is traced)."""
    from nst_jax import tiling

    def objective(X, params, targets, config, spec):
        with tiling.over_devices(devices):
            return objective_fn(X, params, targets, config, spec)

    return objective


@dataclasses.dataclass(frozen=True)
class Layout:
    """One image (``points=0``), ``points`` images along a sharded leading axis, or
    (``rows=True``) one image sharded along its height over ``devices``.

    Rows: X ``(H, W, C)`` and every image-shaped leaf of the loop state are placed with
    ``NamedSharding(mesh, P("rows"))``, padded to a multiple of the device count (edge
    rows, trimmed from the cost by :func:`trimmed` and from the results); params and
    targets replicated. The step is the single-image program: XLA's SPMD partitioner
    propagates the sharding to the activations and inserts the convolution halo
    exchanges and the Gram all-reduces; nothing is hand-written."""

    points: int = 0
    devices: tuple[Any, ...] = ()
    rows: bool = False
    per_point: bool = False  # each point has its own content (and targets): a batch
    tiles: bool = False  # one tiled image (Config.tile), its tiles spread over the devices

    @staticmethod
    def over_tiles(devices: Sequence[Any] | None = None) -> Layout:
        """One tiled image (``Config.tile``) whose tiles are spread over ``devices``
        (default: all of them; every host's after ``jax.distributed.initialize``).

        Everything is replicated (X, its optimizer state, params, targets: image-sized,
        small next to a window's activations); inside the step each device scans its
        share of the tiles and the sums and the gradient are summed over the devices
        (:func:`nst_jax.tiling.over_devices`). Per device: one window's working set.
        Chosen over splitting each window by rows (:meth:`by_rows`) because a tile's
        window is already what fits one device, a row split of it would exchange halos
        at every layer of every tile, and each device here runs whole tiles with no
        communication but two small all-reduces per step."""
        devs = tuple(devices) if devices is not None else tuple(jax.devices())
        return Layout(0, devs, tiles=True)

    @staticmethod
    def by_rows(devices: Sequence[Any] | None = None) -> Layout:
        """One image split along its height over ``devices`` (default: all of them)."""
        devs = tuple(devices) if devices is not None else tuple(jax.devices())
        return Layout(0, devs, rows=True)

    def padded(self, height: int) -> int:
        """The height X is stored at: a multiple of the device count (rows layouts)."""
        n = len(self.devices) if self.rows else 1
        return -(-height // n) * n

    def _rows_mesh(self) -> Mesh:
        return Mesh(np.asarray(self.devices), ("rows",))

    def split_rows(self, tree: Any, height: int) -> Any:
        """Place image-shaped leaves (``(height, W, C)``) along the rows, others replicated."""
        mesh = self._rows_mesh()
        return jax.tree.map(
            lambda a: jax.device_put(a, NamedSharding(
                mesh, P("rows") if np.ndim(a) == 3 and np.shape(a)[0] == height else P())), tree)

    @staticmethod
    def of(points: int, devices: Sequence[Any] | None = None, per_point: bool = False) -> Layout:
        """A leading axis of ``points`` (rounded up to a multiple of the device count);
        ``per_point``: each point is its own photo (content and targets per point)."""
        devs = tuple(devices) if devices is not None else tuple(jax.devices())
        return Layout(-(-points // len(devs)) * len(devs), devs, per_point=per_point)

    @property
    def batched(self) -> bool:
        return self.points > 0

    @property
    def platform(self) -> str:
        """Where the programs run (``cpu``, ``gpu``, ``tpu``); starts the backend."""
        return self.devices[0].platform if self.devices else jax.default_backend()

    def winograd(self, precision: str = "f32") -> bool:
        """Whether the 512-channel layers use Winograd convolutions
        (:func:`nst_jax.winograd.winograd_wins`): measured faster on XLA:CPU, in float32
        (bf16 convolutions keep XLA's); an image split by rows keeps XLA's convolutions
        (their halo exchange is XLA's own)."""
        return self.platform == "cpu" and not self.rows and precision != "bf16"

    def programs(self, tx: optax.GradientTransformation, spec: vgg.Preprocessing, chunk: int,
                 objective_fn: Callable) -> Programs:
        # GPUs/TPUs: the chunk as a loop of a static trip count; CPU: a while loop (it ends a
        # converged run's chunk at once; the same time and memory there)
        static = self.platform != "cpu"
        if self.tiles:
            objective_fn = spread_tiles(objective_fn, self.devices)
        if self.batched:
            return vmapped_programs(tx, spec, chunk, objective_fn, self.per_point, static)
        return single_programs(tx, spec, chunk, objective_fn, static)

    def _mesh(self) -> Mesh:
        return Mesh(np.asarray(self.devices), ("points",))

    def split(self, tree: Any) -> Any:
        """Place a pytree whose leaves have the leading axis: sharded over the devices."""
        if self.tiles:
            return self.share(tree)
        if self.rows:
            return self.split_rows(tree, jax.tree.leaves(tree)[0].shape[0])
        if not self.batched:
            return tree
        return jax.device_put(tree, NamedSharding(self._mesh(), P("points")))

    def share(self, tree: Any) -> Any:
        """Place a pytree every point uses (params, targets): replicated."""
        if self.tiles:
            return jax.device_put(tree, NamedSharding(Mesh(np.asarray(self.devices), ("tiles",)), P()))
        if self.rows:
            return jax.device_put(tree, NamedSharding(self._rows_mesh(), P()))
        if not self.batched:
            return tree
        return jax.device_put(tree, NamedSharding(self._mesh(), P()))

    def map(self, fn: Callable, *args: Any) -> Any:
        """``fn`` on one point's arrays, applied to every point (vmap) when batched."""
        return jax.vmap(fn)(*args) if self.batched else fn(*args)


__all__ = ["Layout", "Programs", "single_programs", "spread_tiles", "to_host", "trimmed",
           "vmapped_programs"]
