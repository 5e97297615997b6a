// nst_jax studio: regions painted over the content, a content-strength mask, batch photos,
// and the memory a job will take (asked of /api/estimate before Start). Plain JS.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let brush = 0, erasing = false, painted = false, drawing = false, maskRef = null, cmaskRef = null;

  // studio.js's top-level `meta` (classic scripts share the global lexical scope)
  function palette() { return (typeof meta !== "undefined" && meta && meta.palette) || []; }

  function brushes() {
    const styles = [...$("styles").selectedOptions];
    $("brushes").replaceChildren(...styles.map((o, k) => {
      const c = palette()[k] || [0, 0, 0];
      const b = document.createElement("button");
      b.type = "button"; b.className = "small brush" + (k === brush && !erasing ? " on" : "");
      b.dataset.k = String(k); b.textContent = `style ${k + 1}: ${o.text.replace(/ \(.*\)$/, "")}`;
      b.style.borderLeft = `14px solid rgb(${c.join(",")})`;
      b.addEventListener("click", () => { brush = k; erasing = false; brushes(); });
      return b;
    }));
  }

  function fitCanvas() {
    const img = $("paint-bg"), cv = $("paint");
    if (!img.naturalWidth) return;
    cv.width = img.naturalWidth; cv.height = img.naturalHeight;
    painted = false; cv.dataset.painted = "0";
  }

  let last = null;  // the previous point of a stroke: segments join them (pointer events are sparse)
  function paintAt(e) {
    const cv = $("paint"), r = cv.getBoundingClientRect(), g = cv.getContext("2d");
    const x = (e.clientX - r.left) * cv.width / r.width, y = (e.clientY - r.top) * cv.height / r.height;
    const rad = Number($("brush-size").value) * cv.width / Math.max(r.width, 1) / 2;
    g.globalCompositeOperation = erasing ? "destination-out" : "source-over";
    g.fillStyle = g.strokeStyle = `rgb(${(palette()[brush] || [0, 0, 0]).join(",")})`;
    g.lineWidth = 2 * rad; g.lineCap = "round";
    g.beginPath();
    if (last) { g.moveTo(last[0], last[1]); g.lineTo(x, y); g.stroke(); }
    else { g.arc(x, y, rad, 0, 2 * Math.PI); g.fill(); }
    last = [x, y];
    if (!erasing) { painted = true; cv.dataset.painted = "1"; }
  }

  async function uploadBlob(blob, name) {
    const r = await fetch("/api/upload?name=" + encodeURIComponent(name), {method: "POST", body: blob});
    const body = await r.json();
    if (!r.ok) throw Object.assign(new Error(body.error || r.statusText), {fields: {regions: body.error}});
    return body.ref;
  }

  async function extras(mode) {
    const out = {};
    if (mode === "batch") {
      out.contents = [...$("batch-photos").selectedOptions].map((o) => o.value);
      if (out.contents.length) out.content = out.contents[0];
      return out;
    }
    if (painted) {
      const blob = await new Promise((ok) => $("paint").toBlob(ok, "image/png"));
      out.regions = await uploadBlob(blob, "mask.png");
    } else if (maskRef) out.regions = maskRef;
    if (cmaskRef) out.content_mask = cmaskRef;
    return out;
  }

  let timer = null;
  function estimateSoon() { clearTimeout(timer); timer = setTimeout(estimate, 250); }
  async function estimate() {
    const v = {};
    for (const e of document.querySelectorAll("#form [name], #advanced-fields [name], #scale-fields [name]")) v[e.name] = e.value;
    const mode = document.querySelector("input[name=mode]:checked").value;
    const body = {...v, mode, content: $("content").value, contents: [...$("batch-photos").selectedOptions].map((o) => o.value)};
    try {
      const r = await fetch("/api/estimate", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
      const m = await r.json();
      if (!r.ok) { $("memory").textContent = ""; return; }
      const gib = (b) => (b / 2 ** 30).toFixed(2) + " GiB";
      $("memory").dataset.bytes = String(m.predicted);
      $("memory").textContent = `memory: about ${gib(m.predicted)} per device predicted` +
        (m.available ? ` of ${gib(m.available)} free` : "") + (m.fits ? "" : " — too much: set a tile or lower the size");
      $("memory").classList.toggle("err", !m.fits);
    } catch (e) { $("memory").textContent = ""; }
  }

  function mirrorPhotos() {
    const keep = [...$("batch-photos").selectedOptions].map((o) => o.value);
    $("batch-photos").replaceChildren(...[...$("content").options].map((o) => {
      const c = o.cloneNode(true); c.selected = keep.includes(c.value); return c;
    }));
  }

  document.addEventListener("nst-ready", () => {
    const img = $("paint-bg"), cv = $("paint");
    const follow = () => { img.src = $("content-thumb").src; };
    follow();
    img.addEventListener("load", fitCanvas);
    $("content").addEventListener("change", () => { follow(); estimateSoon(); });
    $("styles").addEventListener("change", brushes);
    brushes();
    cv.addEventListener("pointerdown", (e) => { drawing = true; last = null; cv.setPointerCapture(e.pointerId); paintAt(e); });
    cv.addEventListener("pointermove", (e) => { if (drawing) paintAt(e); });
    cv.addEventListener("pointerup", () => { drawing = false; last = null; });
    $("eraser").addEventListener("click", () => { erasing = true; brushes(); });
    $("clear-mask").addEventListener("click", fitCanvas);
    $("mask-file").addEventListener("change", async (e) => {
      if (e.target.files[0]) maskRef = await uploadBlob(e.target.files[0], e.target.files[0].name).catch(() => null);
    });
    $("cmask-file").addEventListener("change", async (e) => {
      if (e.target.files[0]) cmaskRef = await uploadBlob(e.target.files[0], e.target.files[0].name).catch(() => null);
    });
    new MutationObserver(mirrorPhotos).observe($("content"), {childList: true});
    mirrorPhotos();
    for (const e of document.querySelectorAll("#form [name], #advanced-fields [name], #scale-fields [name], #batch-photos"))
      e.addEventListener("change", estimateSoon);
    estimateSoon();
  });
  window.nstExtras = extras;
})();
