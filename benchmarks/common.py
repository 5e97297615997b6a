"""Shared measuring helpers of the benchmark scripts (not part of the package).

* :func:`matmul_peak_gflops`: this machine's float32 matmul rate, the "peak" that
  every table's ``% peak`` column divides by;
* :func:`step_gflop`: the analytic FLOPs of one cost + gradient evaluation;
* :class:`ProcessMemory`: the process's resident memory (Linux ``/proc``), with the
  high-water mark reset between measurements;
* :func:`cpu_info`: the CPU model and its vector extensions, recorded in every JSON
  (ratios between tools differ between machines of one kind: AVX2 vs AVX-512 kernels).
"""

from __future__ import annotations

import ctypes
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nst_jax import vgg

#: The vector extensions that decide which kernels XLA, oneDNN and BLAS run.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512_bf16", "avx512_vp2intersect", "avx_vnni", "avx512_fp16",
                "amx_bf16", "amx_tile")


def cpu_info() -> dict:
    """``{"model", "family", "vector_extensions", "cores", "jaxlib"}`` of this machine
    (Linux ``/proc/cpuinfo``; elsewhere what ``platform`` knows). ``family`` is "cpu
    family/model" (e.g. AMD 25/x = Zen 3 or 4, 26/x = Zen 5): VMs here all say "AMD
    EPYC", and the generations differ by up to 1.9x in these benchmarks."""
    import os
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.M).group(1).strip()
        flags = set(re.search(r"^flags\s*:\s*(.+)$", text, re.M).group(1).split())
        fam = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.M)
        num = re.search(r"^model\s*:\s*(\d+)$", text, re.M)
        family = f"{fam.group(1)}/{num.group(1)}" if fam and num else None
    except (OSError, AttributeError):
        family = None
    try:
        import jaxlib

        jl = jaxlib.__version__
    except ImportError:
        jl = None
    return {"model": model, "family": family, "vector_extensions": [f for f in VECTOR_FLAGS if f in flags],
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "jaxlib": jl}


def _timed(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """Best measured ``n x n`` matmul throughput of numpy (BLAS) on this machine, GFLOP/s."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def step_gflop(arch: str, height: int, width: int | None = None, deepest: str = "conv5_1") -> float:
    """Analytic GFLOPs of one evaluation of J and dJ/dG.

    Every conv up to ``deepest`` costs ``2 H_l W_l C_in C_out 9`` in the forward pass
    and the same again for its input gradient (no kernel gradient is needed); ReLU,
    pooling and the Grams are not counted (< 1%).
    """
    width = height if width is None else width
    total, h, w = 0.0, height, width
    last = vgg.canonical_layer(deepest, arch)
    for name, ((_, _, cin, cout), _) in vgg.conv_shapes(arch).items():
        if name.endswith("_1") and name != "conv1_1":
            h, w = h // 2, w // 2
        total += 2.0 * h * w * cin * cout * 9
        if name == last:
            break
    return 2 * total / 1e9


class ProcessMemory:
    """Resident memory of this process (Linux), in bytes.

    ``reset()`` returns freed heap pages to the OS (``malloc_trim``) and resets the
    kernel's high-water mark (``/proc/self/clear_refs`` = 5); ``peak()`` then reads the
    largest resident size since. Unavailable (``ok`` False) off Linux.
    """

    def __init__(self) -> None:
        self.ok = Path("/proc/self/status").exists()
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except OSError:
            self._trim = None

    def _read(self, key: str) -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) * 1024

    def reset(self) -> int:
        """Trim, reset the high-water mark; returns the resident bytes now."""
        if self._trim is not None:
            self._trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.ok = False
        return self._read("VmRSS") if self.ok else 0

    def peak(self) -> int:
        return self._read("VmHWM") if self.ok else 0


def interleaved_step_times(params: dict, spec: Any, X0: Any, cases: dict[Any, tuple[Any, dict]],
                           repeats: int) -> dict[Any, float]:
    """Median seconds of one jitted Adam step (:func:`nst_jax.step.make_step`) from ``X0`` for
    each ``{key: (config, targets)}``: every case compiled first, then the cases timed in
    turn, ``repeats`` rounds, so drifts of the machine fall on all of them alike."""
    import statistics

    import jax
    import jax.numpy as jnp

    from nst_jax import step

    fns = {}
    for k, (cfg, t) in cases.items():
        tx = step.make_optimizer(cfg)
        f = jax.jit(step.make_step(tx, spec))
        X = jnp.asarray(X0)
        s0 = tx.init(X)
        jax.block_until_ready(f(X, s0, params, t, cfg))  # compile
        fns[k] = (f, X, s0, t, cfg)
    times: dict[Any, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, (f, X, s0, t, cfg) in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(X, s0, params, t, cfg))
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
