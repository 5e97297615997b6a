"""The studio's API: every endpoint, the live stream, stop, the queue, sweeps, the
gallery, uploads and their limits, path traversal, bad values and the token.
Tiny jobs (32 px, synthetic weights)."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from conftest import tiny_params
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from nst_jax import vgg
from nst_jax.studio.app import create_app

JOB = {"content": "example:content_chelsea.png", "styles": ["example:style_swirls.png"],
       "size": "32", "iters": "6", "report_every": "2", "beta": "1e-2"}


@pytest.fixture
def client(tmp_path):
    app = create_app(tmp_path / "out", tiny_params(), vgg.CAFFE, {"source": "synthetic"},
                     max_upload_bytes=200_000, max_pixels=300_000)
    with TestClient(app) as c:
        c.out = tmp_path / "out"
        c.studio = app.state.studio
        yield c


def _wait(c, job: str, states=("done", "stopped", "failed"), timeout: float = 120) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = c.get(f"/api/jobs/{job}").json()
        if j["state"] in states:
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not reach {states}: {j}")


def _png(w: int, h: int, flat: bool = False) -> bytes:
    buf = io.BytesIO()
    pixels = np.zeros((h, w, 3), np.uint8) if flat else np.random.default_rng(0).integers(
        0, 255, (h, w, 3), np.uint8)
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_page_static_and_meta(client):
    assert "nst_jax studio" in client.get("/").text
    assert "EventSource" in client.get("/static/studio.js").text
    meta = client.get("/api/meta").json()
    assert {"content_chelsea.png", "style_swirls.png"} <= set(meta["examples"])
    names = {f["name"]: f for f in meta["fields"]}
    assert names["beta"]["default"] == 1e-4 and names["optimizer"]["choices"] == ["adam", "lbfgs", "sgd"]
    assert client.get("/examples/content_chelsea.png").status_code == 200


def test_single_run_streams_progress_then_lands_in_the_gallery(client):
    job = client.post("/api/jobs", json=JOB).json()["job"]
    seen = []
    with client.stream("GET", "/api/events") as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                j = next(x for x in json.loads(line[5:])["jobs"] if x["id"] == job)
                seen.append((j["state"], j["step"], j["version"]))
                if j["state"] == "done":
                    break
    assert seen[-1][:2] == ("done", 6) and len({v for *_, v in seen}) >= 3  # previews came in
    j = client.get(f"/api/jobs/{job}").json()
    assert [p["step"] for p in j["curve"]] == [2, 4, 6] and j["compile_s"] > 0
    assert j["first_preview_s"] > 0 and j["it_per_s"] > 0
    png = client.get(f"/api/jobs/{job}/preview.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    items = client.get("/api/gallery").json()["items"]
    assert items[0]["name"] == j["outputs"][0] and items[0]["status"] == "done"
    assert items[0]["settings"]["iters"] == 6 and items[0]["costs"]["total"] > 0
    assert client.get("/files/" + items[0]["name"]).content[:4] == b"\x89PNG"
    assert client.get("/thumbs/" + items[0]["name"]).status_code == 200


def test_cli_runs_show_up_in_the_gallery(client):
    from nst_jax.image import save_image

    save_image(client.out / "cli-run.png", np.zeros((8, 8, 3), np.float32),
               {"status": "done", "settings": {"alpha": 1}, "final_costs": {"total": 3.0}})
    item = next(i for i in client.get("/api/gallery").json()["items"] if i["name"] == "cli-run.png")
    assert item["source"] == "cli" and item["costs"]["total"] == 3.0


def test_stop_keeps_the_image_and_jobs_queue(client):
    long = {**JOB, "iters": "4000"}
    first = client.post("/api/jobs", json=long).json()["job"]
    second = client.post("/api/jobs", json=JOB).json()
    assert second["position"] == 1  # waits behind the running one
    _wait(client, first, ("running",))
    assert client.get(f"/api/jobs/{second['job']}").json()["position"] == 1
    assert client.post(f"/api/jobs/{first}/stop").status_code == 200
    j = _wait(client, first)
    assert j["state"] == "stopped" and 0 < j["step"] < 4000 and j["outputs"]
    meta = json.loads((client.out / (j["outputs"][0] + ".json")).read_text())
    assert meta["status"] == "stopped"
    assert _wait(client, second["job"])["state"] == "done"  # the queue moved on


def test_stop_a_waiting_job(client):
    first = client.post("/api/jobs", json={**JOB, "iters": "4000"}).json()["job"]
    second = client.post("/api/jobs", json=JOB).json()["job"]
    assert client.post(f"/api/jobs/{second}/stop").json()["state"] == "stopped"
    client.post(f"/api/jobs/{first}/stop")
    _wait(client, first)
    assert client.get(f"/api/jobs/{second}").json()["step"] == 0


def test_sweep_is_one_program_with_a_live_table(client):
    job = client.post("/api/jobs", json={**JOB, "mode": "sweep", "alphas": "1,10", "betas": "1e-3"}).json()
    j = _wait(client, job["job"])
    assert j["state"] == "done" and [c["point"] for c in j["cells"]] == [
        {"alpha": 1.0, "beta": 1e-3}, {"alpha": 10.0, "beta": 1e-3}]
    assert all(c["costs"]["total"] > 0 and c["file"] for c in j["cells"])
    assert client.get(f"/api/jobs/{job['job']}/cells/1.png").content[:4] == b"\x89PNG"
    assert client.get(f"/api/jobs/{job['job']}/cells/2.png").status_code == 404
    assert len(j["outputs"]) == 2


def test_uploads_and_their_limits(client):
    r = client.post("/api/upload?name=../../evil.png", content=_png(40, 40))
    assert r.status_code == 200
    ref = r.json()["ref"]
    assert ref.startswith("upload:") and ".." not in ref and "evil" not in ref
    job = client.post("/api/jobs", json={**JOB, "content": ref}).json()["job"]
    assert _wait(client, job)["state"] == "done"
    assert client.post("/api/upload", content=b"hello").json()["error"].startswith("not an image")
    big = client.post("/api/upload", content=b"x" * 300_000)
    assert big.status_code == 413 and "upload too large" in big.json()["error"]
    bomb = client.post("/api/upload", content=_png(600, 600, flat=True))  # 360000 px > 300000, 2 KB
    assert bomb.status_code == 413 and "600x600 pixels" in bomb.json()["error"]
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    assert client.post("/api/upload", content=gif.getvalue()).status_code == 415


@pytest.mark.parametrize("path", [
    "/files/../pyproject.toml", "/files/..%2F..%2Fpyproject.toml", "/files/.hidden",
    "/files/uploads", "/uploads/..%2Fout.png", "/static/..%2Fapp.py", "/thumbs/%2Fetc%2Fpasswd",
    "/examples/..%2F..%2FREADME.md", "/api/jobs/nope",
])
def test_no_path_outside_its_folder(client, path):
    r = client.get(path)
    assert r.status_code == 404 and "Traceback" not in r.text


def test_bad_values_get_field_messages(client):
    r = client.post("/api/jobs", json={"content": "upload:../../etc/passwd", "styles": [],
                                       "size": "-3", "alpha": "abc", "optimizer": "bogus",
                                       "style_layers": "conv9_9", "mode": "single"})
    assert r.status_code == 422
    f = r.json()["fields"]
    assert f["size"] == "expected a positive integer, got -3"
    assert "alpha" in f and "expected one of adam, lbfgs, sgd" in f["optimizer"]
    assert "unknown layer 'conv9_9'" in f["style_layers"] and f["styles"] == "choose an image"
    assert "no such file" in f["content"]
    r = client.post("/api/jobs", json={**JOB, "mode": "sweep", "alphas": "1", "betas": ""})
    assert "betas" in r.json()["fields"]
    assert client.post("/api/jobs", content=b"{oops").status_code == 400


def test_a_failing_job_shows_a_message(tmp_path):
    def boom(job, studio):
        raise RuntimeError("out of memory on the device")

    app = create_app(tmp_path, tiny_params(), vgg.CAFFE, {}, runner=boom)
    with TestClient(app) as c:
        job = c.post("/api/jobs", json=JOB).json()["job"]
        j = _wait(c, job)
        assert j["state"] == "failed" and j["error"] == "RuntimeError: out of memory on the device"


def test_token(tmp_path):
    app = create_app(tmp_path, tiny_params(), vgg.CAFFE, {}, auth_token="s3cret")
    with TestClient(app) as c:
        r = c.get("/api/meta")
        assert r.status_code == 401 and "token" in r.json()["error"]
        assert c.get("/api/meta", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/meta", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/?token=s3cret").status_code == 200
        assert c.get("/api/meta").status_code == 200  # the cookie the page got


def test_cli_warns_on_an_open_bind_without_a_token(work, capsys, monkeypatch):
    import uvicorn

    from nst_jax.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    assert main(["studio", "--host", "0.0.0.0", "--weights", str(work / "tiny.h5"),
                 "--out", str(work / "studio")]) == 0
    err = capsys.readouterr().err
    assert "warning: binding 0.0.0.0 without --auth-token" in err
    assert "nst_jax studio: http://127.0.0.1:8000/" in err and calls[0]["host"] == "0.0.0.0"
    assert main(["studio", "--auth-token", "auto", "--weights", str(work / "tiny.h5"),
                 "--out", str(work / "studio")]) == 0
    err = capsys.readouterr().err
    assert "?token=" in err and "warning" not in err
