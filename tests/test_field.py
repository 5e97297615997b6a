"""Regressions from the field (issue 11): what used to fail silently or lose results.

Each test failed before its fix: the import started a backend, writes lost results,
SIGTERM saved nothing, sizes were allocated before being checked, the installed tool
only worked inside the checkout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import FAST, ROOT, run

from nst_jax import files
from nst_jax.cli import common

PY = sys.executable


def _script(work: Path, *extra: str, script: str = "stylize.py") -> list[str]:
    return [PY, str(ROOT / "scripts" / script), str(work / "c.png"), str(work / "s.png"),
            "--weights", str(work / "tiny.h5"), *extra]


def _one_error_line(err: str, starts: str) -> None:
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(starts), err


# ----------------------------------------------------------------------------- 1. backend


@pytest.mark.slow
def test_import_starts_no_backend():
    code = """
import os
import nst_jax, nst_jax.cli, nst_jax.grid, nst_jax.memory, nst_jax.color, nst_jax.image
import nst_jax.models.johnson, nst_jax.models.train, nst_jax.models.tiled, nst_jax.models.store
import nst_jax.models.data, nst_jax.models.export, nst_jax.models.video, nst_jax.cli.train
import nst_jax.photo, nst_jax.tiling, nst_jax.tileplan, nst_jax.cli.video_masks
import nst_jax.autoregions, nst_jax.cli.photo, nst_jax.texture, nst_jax.cli.texture, nst_jax.cli.animate
import nst_jax.histogram
import nst_jax.mrf
import nst_jax.style_sets
import nst_jax.swd
from jax._src import xla_bridge
assert not xla_bridge.backends_are_initialized(), "a backend started at import"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
import jax
print(jax.device_count())
"""
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"


@pytest.mark.slow
def test_device_that_is_absent_is_an_error(work):
    r = subprocess.run(_script(work, *FAST, "--device", "tpu", "-o", str(work / "tpu.png")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    _one_error_line(r.stderr, "error: --device tpu: no tpu device available")
    assert not (work / "tpu.png").exists()


@pytest.mark.slow
def test_device_cpu_is_used(work):
    r = subprocess.run(_script(work, *FAST, "--device", "cpu", "-o", str(work / "cpu.png")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads((work / "cpu.png.json").read_text())["platform"] == "cpu"


# ----------------------------------------------------------------------------- 2. writes


def test_write_bytes_claims_names_atomically(tmp_path):
    p = files.write_bytes(tmp_path / "a.png", b"one")
    with pytest.raises(FileExistsError):
        files.write_bytes(p, b"two")
    assert p.read_bytes() == b"one"
    files.write_bytes(p, b"three", overwrite=True)
    assert p.read_bytes() == b"three"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.png"]  # no temp left behind


def test_name_taken_between_check_and_write_goes_to_next_number(tmp_path):
    dest = tmp_path / "r.png"
    dest.write_bytes(b"someone else's")  # appeared while we computed
    written, why = common.save_with_fallback(
        dest, lambda p, ow: files.write_bytes(p, b"ours", overwrite=ow), overwrite=False)
    assert written == tmp_path / "r-1.png" and written.read_bytes() == b"ours"
    assert "exists" in why and dest.read_bytes() == b"someone else's"


def test_failed_write_falls_back_to_the_temp_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def write(p, ow):
        if p.parent == tmp_path / "out":
            raise OSError(28, "No space left on device")
        return files.write_bytes(p, b"ours", overwrite=ow)

    written, why = common.save_with_fallback(tmp_path / "out" / "r.png", write, overwrite=False)
    assert written.parent == tmp_path / "tmp" and written.read_bytes() == b"ours"
    assert why == f"cannot write {tmp_path / 'out' / 'r.png'}: No space left on device"


@pytest.mark.slow
def test_two_runs_at_once_with_the_default_name_both_keep_their_result(work, tmp_path):
    cmd = _script(work, *FAST, "--iters", "6")
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["c-s-1.png", "c-s.png"], errs
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == ["c-s-1.png.json", "c-s.png.json"]


@pytest.fixture
def full_disk(tmp_path):
    """A tmpfs of 64 KiB filled to the last byte (needs root; skipped otherwise)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                            str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        with open(mnt / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"x" * 4096)
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow
def test_disk_full_keeps_the_result_and_says_where(work, tmp_path, full_disk):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = subprocess.run(_script(work, *FAST, "--checkpoint-every", "2", "-o", str(full_disk / "r.png")),
                       capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp)})
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"error: checkpoint {full_disk / 'r.png.ckpt'} not written" in r.stderr
    saved = list(tmp.glob("nst_jax-*.png"))
    assert len(saved) == 1 and saved[0].stat().st_size > 0
    assert (f"error: cannot write {full_disk / 'r.png'}: No space left on device; the result "
            f"was saved to {saved[0]} instead") in r.stderr
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no half files


def test_long_output_name(work, tmp_path, capsys):
    name = "a" * 246 + ".png"  # 250 bytes: the sidecar is 255, the limit
    assert run(work, "-o", str(tmp_path / name), out=None) == 0
    assert (tmp_path / name).exists() and (tmp_path / (name + ".json")).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, name + ".json"])
    capsys.readouterr()
    # frames would be OUT.NNNNNN.png: 257 bytes, refused before any compute
    assert run(work, "--save-every", "2", "-o", str(tmp_path / ("b" * 246 + ".png")), out=None) == 2
    err = capsys.readouterr().err
    assert "error: output name too long: bbbb" in err and "the file system allows 255" in err


def test_earlier_frames_and_lone_sidecar_refused_before_compute(work, tmp_path, capsys, monkeypatch):
    import nst_jax.optimize

    def no_compute(*a, **k):
        raise AssertionError("computed before refusing")

    monkeypatch.setattr(nst_jax.optimize, "iterate", no_compute)
    (tmp_path / "f.000002.png").write_bytes(b"old frame")
    assert run(work, "--save-every", "2", "-o", str(tmp_path / "f.png"), out=None) == 2
    assert "f.000002.png exists (frames of an earlier run)" in capsys.readouterr().err
    (tmp_path / "g.png.json").write_text("{}")
    assert run(work, "-o", str(tmp_path / "g.png"), out=None) == 2
    assert "g.png.json exists; pass --overwrite" in capsys.readouterr().err


def test_default_name_skips_a_lone_sidecar_and_old_frames(work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c-s.png.json").write_text("{}")
    (tmp_path / "out" / "c-s-1.000002.png").write_bytes(b"old frame")
    assert common.__name__  # the default name is chosen by the stylize subcommand
    from nst_jax.cli import stylize as st

    args = st.fill_parser(common.Parser(prog="t")).parse_args(
        [str(work / "c.png"), str(work / "s.png"), "--save-every", "2"])
    assert st._free_default(args) == Path("out") / "c-s-2.png"


def test_grid_default_folders_are_claimed_atomically(work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from nst_jax.cli import grid as gr

    args = gr.fill_parser(common.Parser(prog="t")).parse_args([str(work / "c.png"), str(work / "s.png")])
    first, second = gr._claim_default_folder(args), gr._claim_default_folder(args)
    assert (first.name, second.name) == ("grid-c-s", "grid-c-s-1")


def test_grid_write_failure_writes_everything_elsewhere(tmp_path):
    from nst_jax.cli import grid as gr

    out = tmp_path / "g"
    out.mkdir()
    (out / "b.txt").mkdir()  # the second file cannot be written there
    folder, why = gr.write_all(out, {"a.txt": b"1", "b.txt": b"2"}, overwrite=False)
    assert folder == tmp_path / "g-1" and why.startswith(f"cannot write into {out}")
    assert (folder / "a.txt").read_bytes() == b"1" and (folder / "b.txt").read_bytes() == b"2"
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # the partial write was undone


# ----------------------------------------------------------------------------- 3. signals


def _signal_after(cmd: list[str], marker: str, sig: int, **kw) -> tuple[int, str]:
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, **kw) as p:
        deadline = time.time() + 120
        for line in p.stderr:
            if marker in line or time.time() > deadline:
                break
        p.send_signal(sig)
        err = p.stderr.read()
        return p.wait(timeout=120), err


@pytest.mark.slow
def test_sigterm_saves_like_ctrl_c(work):
    out = work / "term.png"
    code, err = _signal_after(_script(work, "--size", "32", "--beta", "1e-2", "--iters", "100000",
                                      "--report-every", "5", "--checkpoint-every", "5",
                                      "-o", str(out)), "5/100000", signal.SIGTERM)
    assert code == 143, err
    assert "interrupted: wrote" in err and "Traceback" not in err
    assert json.loads((work / "term.png.json").read_text())["status"] == "interrupted"
    assert (work / "term.png.ckpt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0])
def test_sigint_during_start_up_exits_130_without_traceback(work, delay):
    """A signal while JAX and the extensions are imported: recorded, not raised (it used
    to crash inside an extension's import, or print an ImportError traceback)."""
    with subprocess.Popen(_script(work, *FAST, "-o", str(work / f"early{delay}.png")),
                          stderr=subprocess.PIPE, text=True) as p:
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        err = p.stderr.read()
        assert p.wait(timeout=120) == 130, err
    assert "Traceback" not in err and "interrupted" in err


# ----------------------------------------------------------------------------- 4. refuse early


def test_huge_size_refused_before_decoding(work, capsys, monkeypatch):
    from nst_jax import image as I

    def no_decode(*a, **k):
        raise AssertionError("decoded before the memory check")

    monkeypatch.setattr(I, "load_image", no_decode)
    assert run(work, "--size", "65536", out="huge.png") == 2  # the largest --size accepts
    err = capsys.readouterr().err
    assert err.startswith("error: 54613x65536 needs about") and "even in the smallest tiles" in err


def test_resume_with_a_changed_content_file_is_refused(work, tmp_path, capsys):
    from PIL import Image

    c = tmp_path / "c.png"
    c.write_bytes((work / "c.png").read_bytes())
    argv = [str(c), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
            "--checkpoint-every", "2", "--iters", "6"]
    from nst_jax.cli import stylize_main

    assert stylize_main([*argv, "-o", str(tmp_path / "a.png")]) == 0
    Image.new("RGB", (40, 48), "red").save(c)  # same size, other pixels
    capsys.readouterr()
    assert stylize_main([*argv, "--resume", str(tmp_path / "a.png.ckpt"), "-o", str(tmp_path / "b.png")]) == 2
    _one_error_line(capsys.readouterr().err, "error: --resume")


def test_damaged_checkpoint_is_refused(work, tmp_path, capsys):
    from flax import serialization

    from nst_jax.checkpoint import FORMAT

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(serialization.msgpack_serialize({"format": FORMAT, "settings": "{}"}))
    assert run(work, "--resume", str(bad), "-o", str(tmp_path / "r.png"), out=None) == 2
    _one_error_line(capsys.readouterr().err, f"error: {bad}: damaged checkpoint (missing snapshot)")


def test_truncated_h5_from_file(tmp_path, capsys):
    from nst_jax.cli import fetch_main

    src = tmp_path / "k.h5"
    with h5py.File(src, "w") as f:
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
        f.create_dataset("x", data=np.zeros(100000, np.float32))
    src.write_bytes(src.read_bytes()[:5000])
    assert fetch_main(["--from-file", str(src), "--dest", str(tmp_path / "w")]) == 2
    _one_error_line(capsys.readouterr().err, f"error: {src}")
    assert not list((tmp_path / "w").glob("*.h5"))


@pytest.mark.parametrize("argv", [["--iters", "x"], ["--beta", "inf"], ["--lr", "nan"],
                                  ["--noise-ratio", "-inf"]])
def test_argparse_errors_are_one_line(work, argv, capsys):
    with pytest.raises(SystemExit) as e:
        run(work, *argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: argument {argv[0]}: expected")


# ----------------------------------------------------------------------------- 5. installed


def test_weights_cache_and_search_order(tmp_path, monkeypatch):
    from nst_jax import weights as W

    monkeypatch.delenv("NST_JAX_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert W.cache_dir() == tmp_path / "xdg" / "nst_jax" / "weights"
    monkeypatch.setenv("NST_JAX_WEIGHTS", str(tmp_path / "mine"))
    assert W.cache_dir() == tmp_path / "mine"
    monkeypatch.chdir(tmp_path)
    assert W.default_fetch_dir() == tmp_path / "mine"  # no ./weights here
    (tmp_path / "weights").mkdir()
    assert W.default_fetch_dir() == Path("weights")
    dirs = W.search_dirs()
    assert dirs[0] == tmp_path / "weights" and dirs[-1] == tmp_path / "mine"


@pytest.mark.slow
@pytest.mark.slow_install
def test_installed_wheel_outside_the_checkout(work, tmp_path):
    """Build the wheel, install it in a fresh venv (dependencies from this one), and use
    ``nst-jax`` from a folder that is not the checkout."""
    import sysconfig

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NST_JAX_WEIGHTS")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    wheels = tmp_path / "wheels"
    r = subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                       capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        pytest.fail(f"pip wheel failed: {r.stderr[-1000:]}")
    (wheel,) = wheels.glob("nst_jax-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "nst_jax/py.typed" in names and any(n.endswith("licenses/LICENSE") for n in names)
    venv = tmp_path / "venv"
    subprocess.run([PY, "-m", "venv", str(venv)], check=True, timeout=300, env=env)
    vpy = venv / "bin" / "python"
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # jax etc., not nst_jax
    subprocess.run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   timeout=300, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tool = str(venv / "bin" / "nst-jax")

    def nst(*argv):
        return subprocess.run([tool, *argv], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=300)

    where = subprocess.run([str(vpy), "-c", "import nst_jax; print(nst_jax.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv))
    assert nst("--help").returncode == 0
    v = nst("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"nst-jax {__import__('nst_jax').__version__}"
    h = nst("stylize", "--help")
    assert h.returncode == 0 and "usage: nst-jax stylize" in h.stdout and "stylize.py" not in h.stdout
    r = nst("stylize", str(work / "c.png"), str(work / "s.png"), *FAST)
    assert r.returncode == 2 and "fetch weights with: nst-jax fetch-weights" in r.stderr, r.stderr
    keras = tmp_path / "vgg16_notop.h5"
    _tiny_keras(keras)
    r = nst("fetch-weights", "--from-file", str(keras))
    cache = tmp_path / "xdg" / "nst_jax" / "weights"
    assert r.returncode == 0 and (cache / "vgg16.h5").exists(), r.stderr
    r = nst("stylize", str(work / "c.png"), str(work / "s.png"), *FAST, "-o", "r.png")
    assert r.returncode == 0, r.stderr
    assert (elsewhere / "r.png").exists()


def _tiny_keras(path: Path) -> None:
    from conftest import TINY_CHANNELS

    from nst_jax import vgg

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        names = [f"block{n[4]}_conv{n[6]}" for n in vgg.layer_names("vgg16")]
        f.attrs["layer_names"] = np.array([n.encode() for n in ["input_1", *names]])
        for ours, k in zip(vgg.layer_names("vgg16"), names, strict=True):
            kshape, bshape = vgg.conv_shapes("vgg16", TINY_CHANNELS)[ours]
            g = f.create_group(k)
            g.create_dataset(f"{k}_W_1:0", data=rng.normal(0, 0.3, kshape).astype(np.float32))
            g.create_dataset(f"{k}_b_1:0", data=rng.normal(0, 0.1, bshape).astype(np.float32))


# ----------------------------------------------------------------------------- 7. memory


def test_memory_is_checked_per_device(monkeypatch):
    from nst_jax import memory
    from nst_jax.cli.inputs import check_memory
    from nst_jax.config import Config

    cfg = Config().validate("vgg16")
    one = memory.predict_bytes("vgg16", 256, 256, points=1)
    two = memory.predict_bytes("vgg16", 256, 256, points=2)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: int((one + two) / 2 / 0.9))
    check_memory("vgg16", (256, 256), cfg, points=4, devices=4)  # 1 point per device: fits
    with pytest.raises(common.CliError, match=r"per device \(2 grid points each\)"):
        check_memory("vgg16", (256, 256), cfg, points=4, devices=2)


@pytest.mark.slow
def test_grid_chunk_rounding_is_stated(work, tmp_path):
    r = subprocess.run(
        _script(work, "--betas", "1e-2,1e-1,1", "--size", "32", "--iters", "2", "--report-every", "2",
                "--chunk", "1", "-o", str(tmp_path / "g"), script="grid.py"),
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr
    assert "note: --chunk 1 runs as 2 points at a time (a multiple of the 2 devices" in r.stderr


# ----------------------------------------------------------------------------- 10. contact sheet


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("size", [32, 48, 64, 256])
def test_contact_sheet_text_fits_and_never_overlaps(size):
    from nst_jax import image as I

    labels = [f"a={a:g} b={b:g} tv=0.001\nJc={1234.5 * a:.3g} Js={9.87e7 * b:.3g}"
              for a in (1, 10, 100) for b in (1e-5, 1e-4, 1e-3)]
    title = "lbfgs, 1000 iterations, rows: alpha, columns: beta"
    lay = I.sheet_layout(size, size, labels, 3, 3, title=title)
    width, height = lay.size
    images = [(x, y, x + size, y + size) for x, y in lay.image_xy]
    boxes = lay.label_boxes + lay.title_boxes
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= width and 0 <= a[1] and a[3] <= height, (a, lay.size)
        assert not any(_overlap(a, b) for b in boxes[i + 1:])
        assert not any(_overlap(a, im) for im in images)
    assert " ".join(lay.title_lines) == title  # wrapped, nothing cut
    sheet = I.contact_sheet(np.zeros((9, size, size, 3), np.float32), labels, 3, 3, title=title)
    assert sheet.shape == (height, width, 3)


def test_memory_on_an_accelerator_uses_xlas_figure(monkeypatch):
    import jax

    from nst_jax import memory
    from nst_jax.cli.inputs import check_memory
    from nst_jax.config import Config

    class FakeGpu:
        platform = "gpu"

    monkeypatch.setattr(jax, "devices", lambda *a: [FakeGpu()])
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 2**30)
    seen = {}

    def compiled(arch, h, w, config=None, *, points=1):
        seen["points"] = points
        return 3 * 2**30

    monkeypatch.setattr(memory, "compiled_bytes", compiled)
    with pytest.raises(common.CliError, match=r"needs about 3\.0 GiB \(XLA's figure\) per device"):
        check_memory("vgg16", (256, 256), Config().validate("vgg16"), points=6, devices=4)
    assert seen["points"] == 2  # ceil(6 / 4) points on one device


@pytest.mark.slow  # compiles 3 programs (12 s); test_memory checks the figures against XLA's
def test_compiled_bytes_is_xlas_buffer_assignment_and_grows_with_points():
    from nst_jax import memory
    from nst_jax.config import Config

    one = memory.compiled_bytes("vgg16", 64, 64, Config(style_layers=("conv1_1",), style_weights=(1.0,),
                                                        content_layer="conv1_2"))
    two = memory.compiled_bytes("vgg16", 64, 64, Config(style_layers=("conv1_1",), style_weights=(1.0,),
                                                        content_layer="conv1_2"), points=2)
    assert 0 < one < two < 2.2 * one
