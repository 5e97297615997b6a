"""``nst-jax train``, ``apply`` and ``export`` end to end on tiny synthetic weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nst_jax.cli import main
from nst_jax.models import store

TRAIN = ["--crop", "32", "--batch", "2", "--width", "0.125", "--style-size", "32", "--report-every", "2",
         "--beta", "1e-2", "--workers", "2"]


def _data(d, n=4):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40 + 3 * i, 48, 3), np.uint8)).save(d / f"p{i}.png")
    return d


def _train(work, tmp_path, *extra, data=None):
    data = data or _data(tmp_path / "photos")
    return main(["train", "--data", str(data), "--style", str(work / "s.png"), "--weights",
                 str(work / "tiny.h5"), *TRAIN, *extra])


@pytest.fixture(scope="module")
def model(work, tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    data = _data(d / "photos")
    (data / "zero.jpg").write_bytes(b"")
    (data / "broken.png").write_text("not a png")
    code = main(["train", "--data", str(data), "--style", str(work / "s.png"), "--weights",
                 str(work / "tiny.h5"), *TRAIN, "--steps", "4", "--resize", "40", "-o", str(d / "m.nstm")])
    assert code == 0
    return d / "m.nstm"


def test_train_writes_model_checkpoint_preview_and_counts_bad_files(model, capsys):
    _, arch, meta = store.load_model(model)
    assert arch.n_styles == 1 and meta["steps"] == 4 and meta["skipped_files"] == 2 and meta["resize"] == 40
    assert model.with_name("m.nstm.ckpt").is_file() and model.with_name("m-preview.png").is_file()


def test_resume_continues_exactly(work, tmp_path, model):
    a, b = tmp_path / "a.nstm", tmp_path / "b.nstm"
    assert _train(work, tmp_path, "--steps", "4", "-o", str(a)) == 0
    assert _train(work, tmp_path, "--steps", "2", "-o", str(b), "--checkpoint-every", "2") == 0
    assert _train(work, tmp_path, "--steps", "4", "-o", str(b), "--resume") == 0
    pa, pb = store.load_model(a)[0], store.load_model(b)[0]
    for layer in pa:  # the same compiled step on the same batches: bitwise
        for name in pa[layer]:
            np.testing.assert_array_equal(pa[layer][name], pb[layer][name])


def test_cosine_schedule_is_recorded_and_resumes_only_with_itself(work, tmp_path, capsys):
    out = tmp_path / "c.nstm"
    assert _train(work, tmp_path, "--steps", "2", "--lr-schedule", "cosine", "-o", str(out),
                  "--checkpoint-every", "2") == 0
    assert store.load_model(out)[2]["lr_schedule"] == "cosine"
    capsys.readouterr()
    # a constant rate's Adam state has no schedule count: the checkpoint does not fit it
    assert _train(work, tmp_path, "--steps", "4", "-o", str(out), "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not match this optimizer" in err and err.count("\n") == 1


@pytest.mark.parametrize(("setup", "message"), [
    ("empty", "no usable photos (no images"),
    ("bad", "no usable photos (2 unreadable file(s))"),
    ("resume", "--resume: no checkpoint"),
    ("exists", "exists"),
])
def test_train_refusals(work, tmp_path, capsys, setup, message):
    d = tmp_path / "d"
    d.mkdir()
    extra = ["-o", str(tmp_path / "m.nstm"), "--steps", "2"]
    if setup == "bad":
        (d / "a.png").write_bytes(b"")
        (d / "b.jpg").write_text("x")
    if setup in ("resume", "exists"):
        _data(d)
    if setup == "resume":
        extra.append("--resume")
    if setup == "exists":
        (tmp_path / "m.nstm").write_text("mine")
    assert _train(work, tmp_path, *extra, data=d) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    if setup == "exists":
        assert (tmp_path / "m.nstm").read_text() == "mine"
    else:
        assert not (tmp_path / "m.nstm").exists()


def test_apply_folder_and_glob_with_metadata(work, model, tmp_path, capsys):
    photos = _data(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert main(["apply", str(model), str(photos), str(work / "c.png"), "-o", str(out),
                 "--strength", "0.5"]) == 0
    names = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert names == ["c-m.png", "p0-m.png", "p1-m.png", "p2-m.png"]
    meta = json.loads(Image.open(out / "p1-m.png").text["nst_jax"])
    assert meta["strength"] == 0.5 and meta["content"].endswith("p1.png")
    assert main(["apply", str(model), str(photos / "p0.png"), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    one = tmp_path / "one.png"
    assert main(["apply", str(model), str(photos / "p0.png"), "-o", str(one), "--tile", "16"]) == 0
    tiled = np.asarray(Image.open(one), np.float32)
    whole = np.asarray(Image.open(out / "p0-m.png"), np.float32)
    assert np.abs(tiled - 2 * whole + np.asarray(Image.open(photos / "p0.png"), np.float32)).max() <= 2.0


@pytest.mark.parametrize(("args", "message"), [
    (["--strength", "1.5"], "--strength: expected a number in [0, 1], got 1.5"),
    (["--strength", "x"], "--strength: expected a number in [0, 1], got 'x'"),
    (["--style", "1"], "--style: the model has 1 style(s) (0..0), got 1"),
    (["--style-mix", "0.5,0.5"], "--style-mix: expected 1 weights (one per style of the model: 1)"),
])
def test_apply_refusals(work, model, tmp_path, capsys, args, message):
    assert main(["apply", str(model), str(work / "c.png"), "-o", str(tmp_path / "o.png"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "o.png").exists()


def test_apply_refuses_bad_model_files(work, model, tmp_path, capsys):
    cut = tmp_path / "cut.nstm"
    cut.write_bytes(model.read_bytes()[:1000])
    assert main(["apply", str(cut), str(work / "c.png"), "-o", str(tmp_path / "o.png")]) == 2
    assert "not a readable model (truncated or damaged" in capsys.readouterr().err


def test_export_stablehlo_and_unwritable_folder(work, model, tmp_path, capsys, monkeypatch):
    import jax

    out = tmp_path / "m.stablehlo"
    assert main(["export", str(model), "-o", str(out), "--height", "24", "--width", "20"]) == 0
    x = np.random.default_rng(0).uniform(0, 1, (24, 20, 3)).astype(np.float32)
    y = np.asarray(jax.export.deserialize(bytearray(out.read_bytes())).call(x))
    assert y.shape == (24, 20, 3)
    assert main(["export", str(model), "-o", str(tmp_path / "nowhere" / "m.onnx"), "--format", "onnx"]) == 2
    assert "folder" in capsys.readouterr().err
    import errno

    from nst_jax import files

    def refuse(path, data, *, overwrite=False):  # a folder the user may not write (root may)
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(files, "write_bytes", refuse)
    code = main(["export", str(model), "-o", str(tmp_path / "m2.stablehlo"), "--height", "8", "--width", "8"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot write") and "Permission denied" in err, err
    assert not (tmp_path / "m2.stablehlo").exists()


def test_stylize_starts_from_a_model(work, model, tmp_path, capsys):
    from nst_jax.cli import stylize_main

    base = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"), "--size", "32",
            "--iters", "2", "--report-every", "1"]
    out = tmp_path / "o.png"
    assert stylize_main([*base, "--init", f"model:{model}", "-o", str(out)]) == 0
    meta = json.loads(Image.open(out).text["nst_jax"])
    assert meta["init"] == f"model:{model}"
    assert stylize_main([*base, "--init", "model:" + str(tmp_path / "none.nstm"), "-o",
                         str(tmp_path / "x.png")]) == 2
    assert "error: --init: model not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        stylize_main([*base, "--init", "bogus", "-o", str(tmp_path / "y.png")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "expected one of noise, content, content+noise or model:PATH, got 'bogus'" in err


def test_video_with_a_model_and_the_temporal_blend(work, model, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (40, 56, 3), np.uint8)
    for t in range(4):  # a pattern moving right by one pixel a frame
        Image.fromarray(np.roll(base, t, axis=1)).save(frames / f"{t:04d}.png")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["video", str(frames), "-o", str(out), "--model", str(model), "--blend", "0.5",
                 "--size", "56"]) == 0
    written = sorted(out.glob("0*.png"))
    assert len(written) == 4 and json.loads((out / "meta.json").read_text())["blend"] == 0.5
    assert main(["video", str(frames), str(work / "s.png"), "-o", str(tmp_path / "o2"), "--model",
                 str(model)]) == 2
    assert "--model: the model holds the style; give no STYLE images" in capsys.readouterr().err
    assert main(["video", str(frames), "-o", str(tmp_path / "o3"), "--model", str(model),
                 "--blend", "1"]) == 2
    assert "--blend: expected a number in [0, 1), got 1" in capsys.readouterr().err
    assert main(["video", str(frames), "-o", str(tmp_path / "o4")]) == 2
    assert "expected style image(s) after IN (or --model MODEL)" in capsys.readouterr().err


def test_temporal_blend_follows_the_flow_where_it_is_reliable():
    import jax.numpy as jnp

    from nst_jax.models.video import blend_previous

    net = np.zeros((8, 8, 3), np.float32)
    prev = np.ones((8, 8, 3), np.float32)
    still = jnp.zeros((8, 8, 2), jnp.float32)  # no motion: every pixel reliable
    out = np.asarray(blend_previous(net, prev, still, still, 0.25))
    np.testing.assert_allclose(out, 0.25)
