"""The studio in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium. It opens the page, picks the bundled
examples, starts a tiny job, sees the preview change and the plot gain points, stops
the job and finds it in the gallery; then a sweep fills its table. A second test paints
a region with the mouse and runs a two-region job. Skipped, with the
reason, where no browser is installed (``.ci/run`` installs one).

``NST_STUDIO_SCREENSHOTS=DIR`` saves screenshots of both views there (with
``weights/vgg16.h5`` and 128 px when the real weights are present): that is how
``docs/studio*.png`` are made.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import REAL_VGG16, tiny_params

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    uvicorn = pytest.importorskip("uvicorn")
    from nst_jax import vgg
    from nst_jax.studio.app import create_app

    shots = os.environ.get("NST_STUDIO_SCREENSHOTS")
    if shots and REAL_VGG16.exists():
        from nst_jax.weights import load_weights

        params, spec = load_weights(REAL_VGG16)
    else:
        params, spec = tiny_params(), vgg.CAFFE
    app = create_app(tmp_path / "out", params, spec, {"source": "test"})
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", bool(shots and REAL_VGG16.exists())
    srv.should_exit = True
    th.join(10)


@pytest.fixture
def browser():
    if not CHROMIUM or not DRIVER:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


def _until(cond, timeout: float = 120.0, what: str = ""):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _set(d, name: str, value: str) -> None:
    e = d.find_element("id", "f-" + name)
    e.clear()
    e.send_keys(value)


def _open_with(d, url: str, styles: list[str]) -> None:
    """Open the page, the cat as content and ``styles`` selected."""
    from selenium.webdriver.support.ui import Select

    d.get(url)
    _until(lambda: d.execute_script("return document.querySelectorAll('#content option').length"),
           30, "the examples")
    Select(d.find_element("id", "content")).select_by_value("example:content_chelsea.png")
    sel = Select(d.find_element("id", "styles"))
    sel.deselect_all()
    for s in styles:
        sel.select_by_value(s)


def test_studio_in_a_real_browser(server, browser):
    url, real = server
    d = browser
    _open_with(d, url, ["example:style_swirls.png"])
    _set(d, "size", "128" if real else "32")
    _set(d, "iters", "300" if real else "4000")
    _set(d, "report_every", "10" if real else "2")
    d.find_element("id", "start").click()
    preview = d.find_element("id", "preview")
    v1 = int(_until(lambda: int(preview.get_attribute("data-version") or 0) or None, 180, "a preview"))
    _until(lambda: int(preview.get_attribute("data-version")) > v1, 120, "the preview to change")
    _until(lambda: int(d.find_element("id", "plot").get_attribute("data-points")) >= 2, 60, "plot points")
    assert "running" in d.find_element("id", "status").text
    shots = os.environ.get("NST_STUDIO_SCREENSHOTS")
    if shots and real:
        _until(lambda: int(preview.get_attribute("data-version")) >= 12, 300, "a dozen previews")
        d.save_screenshot(str(Path(shots) / "studio.png"))
    d.find_element("id", "stop").click()
    _until(lambda: d.find_element("id", "status").get_attribute("data-state") == "stopped", 60, "stopped")
    card = _until(lambda: d.find_elements("css selector", "#gallery .card"), 30, "the gallery card")
    assert "stopped" in card[0].text and card[0].get_attribute("data-name").startswith("studio-")

    # a sweep: alphas x betas as one program, a live table of images and costs
    d.find_element("css selector", "input[name=mode][value=sweep]").click()
    a, b = d.find_element("id", "alphas"), d.find_element("id", "betas")
    a.clear()
    a.send_keys("1,10")
    b.clear()
    b.send_keys("1e-4,1e-3")
    _set(d, "iters", "100" if real else "6")
    d.find_element("id", "start").click()
    _until(lambda: len(d.find_elements("css selector", "#sweep img.cell")) == 4, 300, "4 sweep cells")
    _until(lambda: d.find_element("id", "status").get_attribute("data-state") == "done", 600, "sweep done")
    if shots and real:
        d.save_screenshot(str(Path(shots) / "studio_sweep.png"))
    _until(lambda: len(d.find_elements("css selector", "#gallery .card")) >= 5, 30, "sweep in the gallery")


def test_paint_a_mask_and_run_a_two_region_job(server, browser):
    """Paint style 1's region over the top of the content, run with two styles: the job
    carries the painted mask, previews arrive; the time from Start to the first preview
    is read from the job (printed: the studio's measurement)."""
    from selenium.webdriver.common.action_chains import ActionChains

    url, real = server
    d = browser
    _open_with(d, url, ["example:style_swirls.png", "example:style_mosaic.png"])
    d.find_element("css selector", "#regions-box summary").click()
    canvas = d.find_element("id", "paint")
    _until(lambda: int(d.execute_script("return document.getElementById('paint').width")) > 0, 30,
           "the canvas")
    assert len(d.find_elements("css selector", "#brushes .brush")) == 2
    w, h = canvas.size["width"], canvas.size["height"]
    chain = ActionChains(d).move_to_element_with_offset(canvas, -w // 2 + 5, -h // 2 + 10).click_and_hold()
    for row in range(10, h // 2, 12):  # brush strokes over the top half
        chain.move_to_element_with_offset(canvas, w // 2 - 5, -h // 2 + row)
        chain.move_to_element_with_offset(canvas, -w // 2 + 5, -h // 2 + row + 6)
    chain.release().perform()
    assert canvas.get_attribute("data-painted") == "1"
    # what the strokes covered: most of the top half, none of the bottom third
    top, bottom = d.execute_script(
        "const c = document.getElementById('paint'), g = c.getContext('2d'), h = c.height, w = c.width;"
        "const share = (y0, y1) => { const a = g.getImageData(0, y0, w, y1 - y0).data; let n = 0;"
        "  for (let i = 3; i < a.length; i += 4) n += a[i] > 127; return n / (a.length / 4); };"
        "return [share(Math.floor(h * 0.1), Math.floor(h * 0.4)), share(Math.floor(h * 0.67), h)];")
    assert top > 0.8 and bottom == 0.0, (top, bottom)
    _set(d, "size", "128" if real else "32")
    _set(d, "iters", "200" if real else "4000")
    _set(d, "report_every", "10" if real else "2")
    _until(lambda: "memory: about" in d.find_element("id", "memory").text, 30, "the memory estimate")
    d.find_element("id", "start").click()
    preview = d.find_element("id", "preview")
    _until(lambda: int(preview.get_attribute("data-version") or 0) >= 2, 300, "previews")
    job = d.execute_script(
        "const id = document.getElementById('stop').dataset.job;"
        "return fetch('/api/jobs/' + id).then((r) => r.json());")
    assert job["settings"]["regions"].startswith("upload:") and len(job["styles"]) == 2
    print(f"studio: Start to first preview of a two-region job: {job['first_preview_s']:.2f} s "
          f"({'real VGG16, 128 px' if real else 'synthetic weights, 32 px'})")
    shots = os.environ.get("NST_STUDIO_SCREENSHOTS")
    if shots and real:
        d.save_screenshot(str(Path(shots) / "studio_regions.png"))
    d.find_element("id", "stop").click()
    _until(lambda: d.find_element("id", "status").get_attribute("data-state") == "stopped", 60, "stopped")


def test_apply_a_trained_model_and_queue_a_training_job(server, browser, tmp_path):
    """A model in the output folder is listed, applied to the cat in one click (the result
    shows with its time), and a training job queued from the page streams its curve and
    previews under Live, then appears in the model list. The child trainer uses the
    default weights file (``weights/vgg16.h5``; .ci/run fetches it)."""
    import jax
    from selenium.webdriver.support.ui import Select

    from nst_jax.models import johnson, store

    url, _ = server
    if not REAL_VGG16.exists():
        pytest.skip("the trainer child needs weights/vgg16.h5 (python scripts/fetch_weights.py)")
    arch = johnson.Arch(width=0.25, n_residual=1)
    store.save_model(tmp_path / "out" / "quick.nstm", johnson.init_params(arch, key=jax.random.key(0)),
                     arch, {"style_names": ["swirls"], "steps": 3})
    d = browser
    _open_with(d, url, ["example:style_swirls.png"])
    _until(lambda: d.execute_script("return document.querySelectorAll('#model option').length"), 30, "models")
    size = d.find_element("id", "model-size")
    size.clear()
    size.send_keys("96")
    d.find_element("id", "apply").click()
    _until(lambda: " ms" in d.find_element("id", "apply-msg").text, 60, "the applied result")
    assert d.execute_script("const i = document.getElementById('apply-result');"
                            "return !i.hidden && i.complete && i.naturalWidth === 96")
    d.find_element("css selector", "#train-box summary").click()
    for name, value in (("steps", "4"), ("crop", "32"), ("batch", "1"), ("width", "0.25"),
                        ("preview_every", "2")):
        e = d.find_element("css selector", f"#train-box [name={name}]")
        e.clear()
        e.send_keys(value)
    d.find_element("id", "t-name").send_keys("fromthepage")
    d.find_element("id", "train").click()
    _until(lambda: d.find_element("id", "status").get_attribute("data-state") == "done", 300, "training")
    assert int(d.find_element("id", "plot").get_attribute("data-points")) == 2
    assert int(d.find_element("id", "preview").get_attribute("data-version")) > 0
    _until(lambda: "models/fromthepage.nstm" in [o.get_attribute("value") for o in
                                                 Select(d.find_element("id", "model")).options], 30,
           "the new model in the list")
