"""The memory model against XLA's own buffer assignment, and its inverse."""

from __future__ import annotations

import pytest

from nst_jax import memory


@pytest.mark.parametrize(("arch", "h", "w", "opt"), [
    ("vgg16", 128, 128, "adam"), ("vgg16", 96, 160, "adam"), ("vgg19", 128, 128, "lbfgs"),
])
def test_prediction_within_20_percent_of_xla(arch, h, w, opt):
    predicted = memory.predict_bytes(arch, h, w, optimizer=opt, runtime=False)
    measured = memory.xla_bytes(arch, h, w, optimizer=opt)
    assert abs(predicted - measured) <= 0.2 * measured, (predicted, measured)


def test_prediction_grows_with_points_size_and_precision():
    one = memory.predict_bytes("vgg16", 256, 256)
    # the targets' forward passes (once per run) are the peak of a single point; the
    # step's memory grows linearly with the points beyond that
    p4, p8 = (memory.predict_bytes("vgg16", 256, 256, points=k) for k in (4, 8))
    assert p8 > p4 > one and p8 - p4 > 0.9 * (p4 - memory.predict_bytes("vgg16", 256, 256, points=0))
    # 4x the pixels: > 3x what is not weights (~210 MB with the Winograd kernels on CPU)
    assert memory.predict_bytes("vgg16", 512, 512) > 3 * (one - 120e6)
    # bf16 halves the activations on accelerators; XLA:CPU computes in f32 and the
    # fused loop keeps bf16 copies besides (measured), so there it costs more
    assert memory.predict_bytes("vgg16", 256, 256, precision="bf16", platform="gpu") < one
    # (XLA's buffers: the process's f32 runs also hold the Winograd kernels, bf16 runs none)
    assert memory.predict_bytes("vgg16", 256, 256, precision="bf16", platform="cpu", runtime=False) > \
        memory.predict_bytes("vgg16", 256, 256, runtime=False)
    assert memory.predict_bytes("vgg16", 256, 256, runtime=False) < one
    assert memory.predict_bytes("vgg16", 256, 256, deepest="conv2_1") < one


def test_largest_size_is_the_inverse():
    budget = 2**30
    side = memory.largest_size(budget, "vgg19")
    assert memory.predict_bytes("vgg19", side, side) <= budget
    assert memory.predict_bytes("vgg19", side + 1, side + 1) > budget
    assert memory.largest_size(10, "vgg19") == 0


def test_available_bytes_uses_the_device_limit_else_the_host(monkeypatch):
    class Accelerator:
        def memory_stats(self):
            return {"bytes_limit": 80 * 2**30, "bytes_in_use": 3 * 2**30}

    class NoStats:
        def memory_stats(self):
            raise NotImplementedError

    assert memory.available_bytes(Accelerator()) == 77 * 2**30
    try:
        with open("/proc/meminfo") as f:
            line = next(x for x in f if x.startswith("MemAvailable:"))
    except OSError:
        pytest.skip("no /proc/meminfo here")
    host = int(line.split()[1]) * 1024
    got = memory.available_bytes(NoStats())
    assert abs(got - host) < 0.05 * host + 2**28  # the host's available RAM, read again
