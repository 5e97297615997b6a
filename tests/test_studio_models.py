"""The studio's trained models (nst_jax.studio.models): the list, apply to an upload or
example at once (saved with metadata, strength, a conditional model's mix, every bad
value), and a queued training job (``nst-jax train`` in a child process) with a live
curve and preview that ends in a model the page can apply. Tiny networks and weights."""

from __future__ import annotations

import json
import time

import jax
import numpy as np
import pytest
from conftest import TINY_CHANNELS, tiny_params
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from nst_jax import vgg
from nst_jax import weights as W
from nst_jax.image import load_image
from nst_jax.models import johnson, store
from nst_jax.studio.app import EXAMPLES, create_app


@pytest.fixture
def client(tmp_path):
    rng = np.random.default_rng(0)
    params = {n: {"kernel": rng.normal(0, 0.3, k).astype(np.float32),
                  "bias": rng.normal(0, 0.1, b).astype(np.float32)}
              for n, (k, b) in vgg.conv_shapes("vgg16", TINY_CHANNELS).items()}
    wpath = tmp_path / "tiny.h5"
    W.write_weights(wpath, params, "vgg16", vgg.CAFFE, {"source": "synthetic"})
    app = create_app(tmp_path / "out", tiny_params(), vgg.CAFFE, {"path": str(wpath), "source": "synthetic"})
    with TestClient(app) as c:
        c.out = tmp_path / "out"
        yield c


def _model(out, name="two.nstm", n_styles=2):
    arch = johnson.Arch(width=0.25, n_styles=n_styles, n_residual=1)
    store.save_model(out / name, johnson.init_params(arch, key=jax.random.key(0)), arch,
                     {"style_names": [f"s{i}" for i in range(n_styles)], "steps": 7})
    return arch


def test_models_are_listed_and_applied_at_once(client):
    assert client.get("/api/models").json() == {"models": []}
    _model(client.out)
    (client.out / "broken.nstm").write_bytes(b"not a model")
    models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert models["two.nstm"]["styles"] == ["s0", "s1"] and models["two.nstm"]["steps"] == 7
    assert "error" in models["broken.nstm"]  # listed with its problem, never a failure
    ref = "example:content_chelsea.png"
    r = client.post("/api/apply", json={"model": "two.nstm", "content": ref, "size": 64, "mix": [1, 3]})
    assert r.status_code == 200, r.text
    body = r.json()
    out = client.out / body["file"]
    with Image.open(out) as im:
        assert max(im.size) == 64 and body["tiled"] is False
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["model"] == "two.nstm" and meta["mix"] == [1, 3] and meta["source"] == "studio"
    gallery = [it["name"] for it in client.get("/api/gallery").json()["items"]]
    assert body["file"] in gallery
    # strength 0 is the content itself (to the PNG's 8 bits)
    r0 = client.post("/api/apply", json={"model": "two.nstm", "content": ref, "size": 64, "strength": 0})
    got = np.asarray(Image.open(client.out / r0.json()["file"]), np.float32) / 255
    np.testing.assert_allclose(got, load_image(EXAMPLES / "content_chelsea.png", 64), atol=1 / 255 + 1e-6)


@pytest.mark.parametrize(("form", "status", "field"), [
    ({"model": "nope.nstm"}, 404, "model"),
    ({"model": "../two.nstm"}, 404, "model"),
    ({"strength": 2}, 400, "strength"),
    ({"strength": "x"}, 400, "strength"),
    ({"size": 1e9}, 400, "size"),
    ({"mix": [0, 0]}, 400, "mix"),
    ({"content": "upload:missing.png"}, 400, "content"),
])
def test_apply_refuses_bad_values_with_json(client, form, status, field):
    _model(client.out)
    body = {"model": "two.nstm", "content": "example:content_chelsea.png", "size": 32, **form}
    r = client.post("/api/apply", json=body)
    assert r.status_code == status and field in r.json()["fields"], r.text


def test_apply_refuses_a_mix_of_the_wrong_length(client):
    _model(client.out)
    r = client.post("/api/apply", json={"model": "two.nstm", "content": "example:content_chelsea.png",
                                        "size": 32, "mix": [1, 1, 1]})
    assert r.status_code == 400 and "style weights: expected 2 values" in r.json()["error"]


@pytest.mark.parametrize(("form", "field"), [
    ({"styles": []}, "styles"), ({"data": "/etc"}, "data"), ({"style_loss": "swd"}, "style_loss"),
    ({"steps": 0}, "steps"), ({"name": "../x"}, "name"), ({"crop": 8}, "crop"),
])
def test_train_refuses_bad_values(client, form, field):
    body = {"styles": ["example:style_swirls.png"], "data": "examples", "steps": 4, **form}
    r = client.post("/api/train", json=body)
    assert r.status_code == 400 and field in r.json()["fields"], r.text


def _wait(c, job, timeout=240.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = c.get(f"/api/jobs/{job}").json()
        if j["state"] in ("done", "stopped", "failed"):
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish: {j}")


def test_a_queued_training_job_streams_its_curve_and_preview_and_makes_a_model(client):
    r = client.post("/api/train", json={"styles": ["example:style_swirls.png"], "data": "examples",
                                        "steps": 4, "crop": 32, "batch": 1, "width": 0.25,
                                        "preview_every": 2, "name": "swirly"})
    assert r.status_code == 200, r.text
    job = _wait(client, r.json()["job"])
    assert job["state"] == "done", job
    assert [p["step"] for p in job["curve"]] == [2, 4]
    assert all(p["total"] > 0 and "style" in p for p in job["curve"])
    assert job["outputs"] == ["models/swirly.nstm"] and job["kind"] == "train"
    png = client.get(f"/api/jobs/{job['id']}/preview.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert "models/swirly.nstm" in [m["name"] for m in client.get("/api/models").json()["models"]]
    again = client.post("/api/train", json={"styles": ["example:style_swirls.png"], "data": "examples",
                                            "steps": 4, "name": "swirly"})
    assert again.status_code == 400 and "exists" in again.json()["fields"]["name"]  # never replaced
    a = client.post("/api/apply", json={"model": "models/swirly.nstm",
                                        "content": "example:content_chelsea.png", "size": 48})
    assert a.status_code == 200, a.text


@pytest.mark.slow
def test_stopping_a_training_job_leaves_a_checkpoint(client):
    r = client.post("/api/train", json={"styles": ["example:style_swirls.png"], "data": "examples",
                                        "steps": 100000, "crop": 32, "batch": 1, "width": 0.25,
                                        "preview_every": 1000, "name": "long"})
    job = r.json()["job"]
    t0 = time.time()
    while not client.get(f"/api/jobs/{job}").json()["curve"]:
        assert time.time() - t0 < 240
        time.sleep(0.1)
    client.post(f"/api/jobs/{job}/stop")
    j = _wait(client, job)
    assert j["state"] == "stopped", j
    assert (client.out / "models" / "long.nstm.ckpt").is_file()  # the trainer's SIGTERM checkpoint


def test_a_studio_mrf_job_uses_mrfs_own_layers_by_default():
    from nst_jax.studio.forms import parse_settings

    s, errors = parse_settings({"style_loss": "mrf", "style_layers": "conv1_1:0.2,conv2_1:0.2,conv3_1:0.2,"
                                "conv4_1:0.2,conv5_1:0.2"}, "vgg16")
    assert not errors and s["style_layer_names"] == ("conv3_1", "conv4_1")
    s, _ = parse_settings({"style_loss": "mrf", "style_layers": "conv2_1"}, "vgg16")
    assert s["style_layer_names"] == ("conv2_1",)  # chosen layers stay
    s, _ = parse_settings({"style_loss": "gram"}, "vgg16")
    assert len(s["style_layer_names"]) == 5
