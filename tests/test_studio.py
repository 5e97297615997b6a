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
    # previews came in: the job published 3 (the stream may coalesce versions that arrive
    # between two reads under load, so it is the job's count that is checked, not the reads)
    assert seen[-1][:2] == ("done", 6) and seen[-1][2] >= 3 and len(seen) >= 2
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
    assert r.status_code == 400
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
    class Server:  # uvicorn's, without its logging set-up (it would hold capsys's stream)
        def __init__(self, config):
            pass

        def run(self, sockets):
            calls.append(sockets[0].getsockname())

    monkeypatch.setattr(uvicorn, "Config", lambda app, **kw: None)
    monkeypatch.setattr(uvicorn, "Server", Server)
    port = _free_port()
    assert main(["studio", "--host", "0.0.0.0", "--port", str(port), "--weights", str(work / "tiny.h5"),
                 "--out", str(work / "studio")]) == 0
    err = capsys.readouterr().err
    assert "warning: binding 0.0.0.0 without --auth-token" in err
    assert f"nst_jax studio: http://127.0.0.1:{port}/" in err and calls[0] == ("0.0.0.0", port)
    assert main(["studio", "--auth-token", "auto", "--port", str(port), "--weights", str(work / "tiny.h5"),
                 "--out", str(work / "studio")]) == 0
    err = capsys.readouterr().err
    assert "?token=" in err and "warning" not in err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _strict(text: str):
    """JSON as a browser's JSON.parse reads it: Infinity and NaN are errors."""
    def no(c):
        raise AssertionError(f"non-finite number {c} in JSON")

    return json.loads(text, parse_constant=no)


def test_a_non_finite_cost_never_reaches_json(tmp_path):
    from nst_jax.image import save_image

    def overflow(job, studio):
        job.state = "running"
        job.step = 2
        job.curve.append({"step": 2, "total": float("inf"), "content": float("nan"), "style": 1.0})
        job.it_per_s = float("inf")
        studio.changed()

    app = create_app(tmp_path, tiny_params(), vgg.CAFFE, {}, runner=overflow)
    save_image(tmp_path / "inf.png", np.zeros((8, 8, 3), np.float32),  # a result whose cost overflowed
               {"status": "stopped", "final_costs": {"total": float("inf")}})
    assert "Infinity" in (tmp_path / "inf.png.json").read_text()
    with TestClient(app) as c:
        job = c.post("/api/jobs", json=JOB).json()["job"]
        _wait(c, job)
        r = c.get(f"/api/jobs/{job}")
        assert r.status_code == 200
        j = _strict(r.text)
        assert j["curve"][0]["total"] is None and j["curve"][0]["style"] == 1.0 and j["it_per_s"] is None
        with c.stream("GET", "/api/events") as s:
            line = next(x for x in s.iter_lines() if x.startswith("data:"))
            _strict(line[5:])
        r = c.get("/api/gallery")
        assert r.status_code == 200
        item = next(i for i in _strict(r.text)["items"] if i["name"] == "inf.png")
        assert item["costs"]["total"] is None


def test_no_file_in_the_output_folder_breaks_the_gallery(client, caplog):
    from nst_jax.image import save_image

    save_image(client.out / "good.png", np.zeros((8, 8, 3), np.float32), {"status": "done"})
    save_image(client.out / "list.png", np.zeros((8, 8, 3), np.float32), None, sidecar=False)
    (client.out / "list.png.json").write_text("[1, 2]")
    save_image(client.out / "odd.png", np.zeros((8, 8, 3), np.float32), None, sidecar=False)
    (client.out / "odd.png.json").write_text('{"settings": 3, "final_costs": "x"}')
    (client.out / "dangling.png").symlink_to(client.out / "gone.png")
    (client.out / "junk.png").write_bytes(b"not a png")
    with caplog.at_level("WARNING", logger="nst_jax.studio"):
        r = client.get("/api/gallery")
    assert r.status_code == 200
    names = {i["name"] for i in r.json()["items"]}
    assert {"good.png", "list.png", "odd.png", "junk.png"} <= names and "dangling.png" not in names
    assert "dangling.png" in caplog.text and "list.png: sidecar ignored" in caplog.text


@pytest.mark.parametrize(("body", "field", "msg"), [
    ({"styles": True}, "styles", "expected a list of images, got bool"),
    ({"styles": {"a": "example:style_swirls.png"}}, "styles", "expected a list of images, got dict"),
    ({"seed": 10**30}, "seed", "at most 4294967295"),
    ({"seed": 1e30}, "seed", "expected a whole number"),
    ({"lbfgs_history": 10**12}, "lbfgs_history", "at most 1000"),
    ({"tol_window": 10**30}, "tol_window", "at most 1000000"),
    ({"style_scale": 1e308}, "style_scale", "at most 16"),
    ({"alpha": 1e308}, "alpha", "at most 1e+15"),
    ({"style_weights": "1,2"}, "style_weights", "expected 1 weights (one per style image), got 2"),
    ({"size": "40", "scales": "3"}, "scales", "at the first scale is too small"),
])
def test_a_job_is_checked_before_it_is_queued(client, body, field, msg):
    r = client.post("/api/jobs", json={**JOB, **body})
    assert r.status_code == 400, r.text
    assert msg in r.json()["fields"][field], r.json()
    assert client.studio.snapshot()["jobs"] == []  # nothing was queued


def test_tokens_are_compared_as_bytes(tmp_path):
    app = create_app(tmp_path, tiny_params(), vgg.CAFFE, {}, auth_token="s3cret")
    with TestClient(app) as c:
        raw = "Bearer \u00e9t\u00e9\u2603".encode()  # UTF-8 bytes in the header (Starlette: latin-1)
        assert c.get("/api/meta", headers={"Authorization": raw}).status_code == 401
        assert c.get("/api/meta", params={"token": "\u00e9t\u00e9\u2603"}).status_code == 401
        c.cookies.set("nst_token", "%C3%A9t%C3%A9")
        assert c.get("/api/meta").status_code == 401
    with pytest.raises(ValueError, match="auth_token: expected printable ASCII"):
        create_app(tmp_path, tiny_params(), vgg.CAFFE, {}, auth_token="\u00e9t\u00e9")


def test_unknown_routes_wrong_methods_and_bombs_answer_in_json(client):
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.json()["error"] == "no such route: /api/nope"
    r = client.delete("/api/gallery")
    assert r.status_code == 405 and "DELETE is not allowed" in r.json()["error"]
    buf = io.BytesIO()  # 30000 x 30000 in a few kB: Pillow calls it a decompression bomb
    Image.new("1", (30000, 30000)).save(buf, "PNG")
    r = client.post("/api/upload", content=buf.getvalue())
    assert r.status_code == 413 and "image too large" in r.json()["error"]


def test_cli_refuses_a_port_in_use_and_out_of_range(work, capsys):
    import socket

    from nst_jax.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["studio", "--port", str(port), "--weights", str(work / "tiny.h5"),
                     "--out", str(work / "studio")])
    err = capsys.readouterr().err
    assert code == 2 and f"--port {port}: cannot listen on 127.0.0.1:{port}: already in use" in err
    assert "nst_jax studio:" not in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as e:
        main(["studio", "--port", "70000"])
    assert e.value.code == 2 and "--port: expected at most 65535, got 70000" in capsys.readouterr().err
