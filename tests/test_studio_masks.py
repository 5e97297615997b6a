"""The studio's regions, content masks, tiles and devices, memory estimate, batch jobs
and capped upload store: the pure parts against hand-made inputs, then the API."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient
from test_studio import JOB, _wait, client  # noqa: F401 (the fixture)

from nst_jax.studio.masks import PALETTE, painted_regions, prune_uploads


def _painted(h: int, w: int, paint: dict[int, tuple[slice, slice]], alpha: bool = True) -> np.ndarray:
    """An RGBA canvas with style k's colour over each ``paint[k]`` box, the rest clear."""
    a = np.zeros((h, w, 4), np.uint8)
    for k, (rs, cs) in paint.items():
        a[rs, cs, :3] = PALETTE[k]
        a[rs, cs, 3] = 255
    return a if alpha else a[..., :3]


def test_painted_regions_map_colours_to_styles_and_the_rest_to_the_unpainted():
    a = _painted(8, 10, {0: (slice(0, 3), slice(None))})
    a[3, 0, :3], a[3, 0, 3] = (np.array(PALETTE[0]) * 0.8).astype(np.uint8), 200  # anti-aliased edge
    regions, of = painted_regions(a, 2)
    assert of == (0, 1) and regions.shape == (2, 8, 10)
    assert regions[0, :3].all() and regions[0, 3, 0] == 1 and regions[0, 4:].sum() == 0
    np.testing.assert_array_equal(regions[1], 1 - regions[0])  # the rest: style 2
    # both painted: unpainted pixels get no style; three styles, one unpainted: the rest
    both = {0: (slice(0, 3), slice(None)), 1: (slice(5, 8), slice(None))}
    r2, of2 = painted_regions(_painted(8, 10, both), 2)
    assert of2 == (0, 1) and r2[:, 3:5].sum() == 0
    r3, of3 = painted_regions(_painted(8, 10, {1: (slice(0, 4), slice(None))}), 3)
    assert of3 == (1, 0, 1) and r3[1, 4:].all()  # styles 1 and 3 share the rest (blended)
    # black paint without alpha is "unpainted" too
    r4, of4 = painted_regions(_painted(8, 10, {0: (slice(0, 3), slice(None))}, alpha=False), 2)
    assert of4 == (0, 1) and r4[0, :3].all() and r4[0, 3:].sum() == 0 and r4[1, 3:].all()


@pytest.mark.parametrize(("paint", "n", "msg"), [
    ({}, 2, "nothing is painted"),
    ({2: (slice(0, 2), slice(None))}, 2, "paint in colour 3 but only 2 style(s) chosen"),
    ({0: (slice(0, 2), slice(None))}, 9, "at most 8 styles can be painted"),
])
def test_painted_regions_refusals(paint, n, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        painted_regions(_painted(8, 10, paint), n)


def test_prune_uploads_removes_the_oldest_first_never_a_busy_one(tmp_path):
    now = time.time()
    for i, name in enumerate(["a.png", "b.png", "c.png", "d.png"]):
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, (now - 100 + i, now - 100 + i))  # a oldest
    removed = prune_uploads(tmp_path, 250, keep={"a.png"})
    assert removed == ["b.png", "c.png"]  # a is busy; after b and c the folder holds 200 bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "d.png"]
    assert prune_uploads(tmp_path, 10_000, keep=set()) == []


def _upload(c, arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    r = c.post("/api/upload?name=m.png", content=buf.getvalue())
    assert r.status_code == 200, r.text
    return r.json()["ref"]


def test_a_painted_two_region_job_with_a_content_mask_runs(client):  # noqa: F811
    with Image.open("examples/content_chelsea.png") as im:
        w, h = im.size
    mask = _upload(client, _painted(h, w, {0: (slice(0, h // 2), slice(None))}))
    cmask = _upload(client, np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1)))
    job = {**JOB, "styles": ["example:style_swirls.png", "example:style_mosaic.png"], "regions": mask,
           "content_mask": cmask, "tile": "0", "devices": "1"}
    r = client.post("/api/jobs", json=job)
    assert r.status_code == 200, r.text
    j = _wait(client, r.json()["job"])
    assert j["state"] == "done" and j["first_preview_s"] > 0, j
    assert j["settings"]["regions"] == mask and j["settings"]["content_mask"] == cmask
    # a mask the engine would refuse is named before the job is queued
    third = _upload(client, _painted(h, w, {2: (slice(0, h // 2), slice(None))}))
    r = client.post("/api/jobs", json={**job, "regions": third})
    assert r.status_code == 400 and "paint in colour 3" in r.json()["fields"]["regions"]


def test_tiles_devices_and_the_memory_estimate(client):  # noqa: F811
    est = client.post("/api/estimate", json={**JOB, "size": "2048", "tile": "0"}).json()
    tiled = client.post("/api/estimate", json={**JOB, "size": "2048", "tile": "512"}).json()
    assert est["predicted"] > tiled["predicted"] > 0 and tiled["fits"] and tiled["tile"] == 512
    r = client.post("/api/jobs", json={**JOB, "size": "96", "tile": "64", "iters": "2"})
    assert r.status_code == 200, r.text
    assert _wait(client, r.json()["job"])["state"] == "done"
    bad = client.post("/api/jobs", json={**JOB, "devices": "99"})
    assert bad.status_code == 400 and "devices" in bad.json()["fields"]
    assert client.get("/api/meta").json()["palette"][0] == list(PALETTE[0])


def test_a_batch_job_writes_every_photo(client):  # noqa: F811
    photos = ["example:content_chelsea.png", "example:content_rocket.jpg"]
    r = client.post("/api/jobs", json={**JOB, "mode": "batch", "contents": photos, "content": photos[0]})
    assert r.status_code == 200, r.text
    j = _wait(client, r.json()["job"])
    assert j["state"] == "done" and len(j["outputs"]) == 2 and [c["point"]["photo"] for c in j["cells"]] == [
        "content_chelsea.png", "content_rocket.jpg"]
    assert client.get(f"/api/jobs/{j['id']}/cells/1.png").content[:4] == b"\x89PNG"
    r = client.post("/api/jobs", json={**JOB, "mode": "batch", "contents": []})
    assert r.status_code == 400 and "contents" in r.json()["fields"]


def test_the_upload_store_is_capped(tmp_path):
    from conftest import tiny_params

    from nst_jax import vgg
    from nst_jax.studio.app import create_app

    app = create_app(tmp_path / "out", tiny_params(), vgg.CAFFE, {}, max_store_bytes=30_000)
    with TestClient(app) as c:
        rng = np.random.default_rng(0)
        refs = [_upload(c, rng.integers(0, 255, (60, 60, 3), np.uint8)) for _ in range(4)]
        left = sorted(p.name for p in (tmp_path / "out" / "uploads").iterdir())
        assert refs[-1].split(":")[1] in left and refs[0].split(":")[1] not in left
        assert sum((tmp_path / "out" / "uploads" / n).stat().st_size for n in left) <= 30_000
