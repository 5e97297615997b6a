// nst_jax studio: plain JS, no build step. State comes from one Server-Sent Events stream.
"use strict";
const MAIN = ["size", "iters", "alpha", "beta", "optimizer", "style_layers", "style_weights",
              "preserve_color", "scales", "style_loss", "report_every"];
const $ = (id) => document.getElementById(id);
let meta = null, myJob = null, shownVersion = -1, lastSnap = null;

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function field(f) {
  const input = f.choices
    ? el("select", {name: f.name, id: "f-" + f.name}, ...f.choices.map((c) => el("option", {value: c, text: c})))
    : el("input", {name: f.name, id: "f-" + f.name});
  input.value = f.default === null || f.default === undefined ? "" : f.default;
  const label = el("label", {title: f.help}, el("span", {text: f.name.replace(/_/g, " ")}), input);
  return [label, el("span", {class: "err", "data-for": f.name})];
}

function imageOptions() {
  const opts = [...meta.examples.map((n) => ["example:" + n, n + " (example)"]),
                ...meta.uploads.map((n) => ["upload:" + n, n + " (upload)"])];
  for (const sel of [$("content"), $("styles")]) {
    const keep = [...sel.selectedOptions].map((o) => o.value);
    sel.replaceChildren(...opts.map(([v, t]) => el("option", {value: v, text: t})));
    for (const o of sel.options) o.selected = keep.includes(o.value);
  }
  if (!$("content").value) {
    const c = [...$("content").options].find((o) => o.value.includes("content_")) || $("content").options[0];
    if (c) c.selected = true;
  }
  if (!$("styles").selectedOptions.length) {
    const s = [...$("styles").options].find((o) => o.value.includes("style_")) || $("styles").options[0];
    if (s) s.selected = true;
  }
  showThumbs();
}

function srcOf(ref) {
  const [kind, name] = ref.split(/:(.*)/s);
  return (kind === "example" ? "/examples/" : "/uploads/") + encodeURIComponent(name);
}

function showThumbs() {
  $("content-thumb").src = $("content").value ? srcOf($("content").value) : "";
  $("style-thumbs").replaceChildren(...[...$("styles").selectedOptions].map((o) => el("img", {src: srcOf(o.value), alt: o.text})));
}

async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  let body = null;
  try { body = await r.json(); } catch (e) { body = {error: r.statusText}; }
  if (!r.ok) throw Object.assign(new Error(body.error || r.statusText), {fields: body.fields || {}});
  return body;
}

async function upload(files) {
  $("upload-msg").textContent = "";
  for (const f of files) {
    try {
      const r = await api("/api/upload?name=" + encodeURIComponent(f.name), {method: "POST", body: f});
      if (!meta.uploads.includes(r.name)) meta.uploads.push(r.name);
      imageOptions();
      $("upload-msg").textContent = "";
    } catch (e) { $("upload-msg").textContent = f.name + ": " + e.message; }
  }
}

function formValues() {
  const v = {};
  for (const e of document.querySelectorAll("#form [name], #advanced-fields [name], #scale-fields [name]")) v[e.name] = e.value;
  return v;
}

function clearErrors() {
  for (const e of document.querySelectorAll(".err")) e.textContent = "";
  for (const e of document.querySelectorAll(".field-error")) e.classList.remove("field-error");
  $("form-msg").textContent = "";
}

async function start() {
  clearErrors();
  const mode = document.querySelector("input[name=mode]:checked").value;
  const body = {mode, content: $("content").value, styles: [...$("styles").selectedOptions].map((o) => o.value),
                alphas: $("alphas").value, betas: $("betas").value, ...formValues()};
  try {
    if (window.nstExtras) Object.assign(body, await window.nstExtras(mode));  // masks, batch photos
    const r = await api("/api/jobs", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    myJob = r.job; shownVersion = -1;
    $("plot").dataset.points = "0";
  } catch (e) {
    $("form-msg").textContent = e.message;
    for (const [k, m] of Object.entries(e.fields || {})) {
      const slot = document.querySelector(`.err[data-for="${k}"]`);
      if (slot) { slot.textContent = m; slot.previousElementSibling && slot.previousElementSibling.classList.add("field-error"); }
      else $("form-msg").textContent += " — " + k + ": " + m;
    }
  }
}

function fmtS(s) { return s === null || s === undefined ? "–" : s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + " min " + Math.round(s % 60) + " s"; }

function drawPlot(curve) {
  const c = $("plot"), g = c.getContext("2d"), W = c.width, H = c.height, P = 36;
  g.clearRect(0, 0, W, H);
  c.dataset.points = String(curve.length);
  if (!curve.length) return;
  const keys = [["total", "#222"], ["content", "#2a7ab0"], ["style", "#c0392b"]];
  const vals = curve.flatMap((p) => keys.map(([k]) => p[k])).filter((v) => v > 0 && isFinite(v));
  if (!vals.length) return;
  let lo = Math.floor(Math.log10(Math.min(...vals))), hi = Math.ceil(Math.log10(Math.max(...vals)));
  if (hi === lo) hi += 1;
  const maxStep = Math.max(...curve.map((p) => p.step), 1);
  const x = (s) => P + (W - P - 8) * s / maxStep, y = (v) => H - 18 - (H - 26) * (Math.log10(v) - lo) / (hi - lo);
  g.strokeStyle = "#eee"; g.fillStyle = "#888"; g.font = "10px sans-serif";
  for (let e = lo; e <= hi; e++) { g.beginPath(); g.moveTo(P, y(10 ** e)); g.lineTo(W, y(10 ** e)); g.stroke(); g.fillText("1e" + e, 2, y(10 ** e) + 3); }
  g.fillText("iteration " + maxStep, W - 80, H - 4);
  for (const [k, col] of keys) {
    g.strokeStyle = col; g.fillStyle = col; g.beginPath();
    curve.forEach((p, i) => { if (p[k] > 0) { i ? g.lineTo(x(p.step), y(p[k])) : g.moveTo(x(p.step), y(p[k])); } });
    g.stroke();
    for (const p of curve) if (p[k] > 0) g.fillRect(x(p.step) - 1.5, y(p[k]) - 1.5, 3, 3);
  }
}

function showSweep(job) {
  const t = $("sweep");
  t.hidden = job.kind !== "sweep";
  if (job.kind === "batch") return showBatch(job, t);
  if (t.hidden) return;
  const alphas = [...new Set(job.points.map((p) => p.alpha))], betas = [...new Set(job.points.map((p) => p.beta))];
  const head = el("tr", {}, el("th", {text: "alpha \\ beta"}), ...betas.map((b) => el("th", {text: String(b)})));
  const rows = alphas.map((a) => el("tr", {}, el("th", {text: String(a)}), ...betas.map((b) => {
    const i = job.points.findIndex((p) => p.alpha === a && p.beta === b), c = job.cells[i];
    if (!c) return el("td", {text: "…"});
    const img = el("img", {src: `/api/jobs/${job.id}/cells/${i}.png?v=${job.version}`, alt: `alpha ${a}, beta ${b}`, class: "cell"});
    img.addEventListener("click", () => openViewer(c.file ? "/files/" + encodeURIComponent(c.file) : img.src));
    return el("td", {}, img, el("span", {text: `J ${c.costs.total.toExponential(2)}`}));
  })));
  t.replaceChildren(head, ...rows);
}

function showBatch(job, t) {
  t.hidden = false;
  const cells = job.points.map((pt, i) => {
    const c = job.cells[i];
    if (!c || !c.file) return el("td", {text: `${pt.photo} …`});
    const img = el("img", {src: `/api/jobs/${job.id}/cells/${i}.png?v=${job.version}`, alt: pt.photo, class: "cell"});
    img.addEventListener("click", () => openViewer("/files/" + encodeURIComponent(c.file)));
    return el("td", {}, img, el("span", {text: pt.photo}));
  });
  t.replaceChildren(el("tr", {}, ...cells));
}

function openViewer(src) { $("viewer-img").src = src; $("viewer").hidden = false; }

function render(snap) {
  lastSnap = snap;
  const jobs = Object.fromEntries(snap.jobs.map((j) => [j.id, j]));
  const job = jobs[myJob] || jobs[snap.current] || snap.jobs.filter((j) => j.state !== "queued").slice(-1)[0];
  $("queue").textContent = snap.queue.length ? `${snap.queue.length} job(s) waiting` +
    (snap.queue.includes(myJob) ? ` — yours is number ${snap.queue.indexOf(myJob) + 1} in the queue` : "") : "";
  $("stop").disabled = !(job && ["queued", "compiling", "running"].includes(job.state));
  if (!job) { $("status").textContent = "idle"; return; }
  const rate = job.it_per_s ? job.it_per_s.toFixed(2) + " it/s" : "–";
  $("status").textContent = `${job.id} ${job.state}: ${job.step}/${job.total || "?"} iterations · ${rate} · ETA ${fmtS(job.eta_s)}` +
    ` · compile ${fmtS(job.compile_s)} · first preview ${fmtS(job.first_preview_s)}` + (job.error ? ` · ${job.error}` : "");
  $("status").dataset.state = job.state;
  $("stop").dataset.job = job.id;
  const previewed = job.kind === "single" || job.kind === "train";
  if (previewed && job.version !== shownVersion && job.version > 0 && (job.kind !== "train" || job.first_preview_s !== null)) {
    $("preview").src = `/api/jobs/${job.id}/preview.png?v=${job.version}`;
    $("preview").dataset.version = String(job.version);
    shownVersion = job.version;
  }
  $("preview").hidden = !previewed;
  drawPlot(job.curve);
  showSweep(job);
  if (["done", "stopped", "failed"].includes(job.state) && job.id !== render.refreshedFor) {
    render.refreshedFor = job.id;
    loadGallery();
    if (window.nstModelsRefresh) window.nstModelsRefresh();
  }
}

async function loadGallery() {
  const g = await api("/api/gallery");
  $("gallery").replaceChildren(...g.items.map((it) => {
    const img = el("img", {src: "/thumbs/" + encodeURIComponent(it.name), alt: it.name, loading: "lazy"});
    img.addEventListener("click", () => openViewer("/files/" + encodeURIComponent(it.name)));
    const s = it.settings || {}, c = it.costs || {};
    const reopen = el("button", {type: "button", class: "small", text: "reopen", onclick: () => reopenRun(s)});
    return el("div", {class: "card", "data-name": it.name}, img,
      el("div", {text: it.name}),
      el("div", {class: "muted", text: `${it.status || "?"} · α ${s.alpha ?? "?"} β ${s.beta ?? "?"} · ${s.iters ?? "?"} it · ${s.size ?? "?"} px`}),
      el("div", {class: "muted", text: c.total !== undefined ? `J ${Number(c.total).toExponential(3)}` : ""}),
      el("div", {class: "actions"}, el("a", {href: "/files/" + encodeURIComponent(it.name), download: it.name, text: "download"}), reopen));
  }));
}

function reopenRun(s) {
  for (const e of document.querySelectorAll("#form [name], #advanced-fields [name]")) {
    let v = s[e.name];
    if (e.name === "style_layers" && v && typeof v === "object") v = Object.entries(v).map(([k, w]) => `${k}:${w}`).join(",");
    if (v !== undefined && v !== null && typeof v !== "object") e.value = v;
  }
  const pick = (sel, refs) => { for (const o of sel.options) o.selected = refs.includes(o.value); };
  if (typeof s.content === "string" && [...$("content").options].some((o) => o.value === s.content)) pick($("content"), [s.content]);
  if (Array.isArray(s.style) && s.style.every((r) => [...$("styles").options].some((o) => o.value === r))) pick($("styles"), s.style);
  showThumbs();
  window.scrollTo(0, 0);
}

function connect() {
  const es = new EventSource("/api/events");
  es.onopen = () => { $("conn").textContent = "live"; };
  es.onmessage = (e) => render(JSON.parse(e.data));
  es.onerror = () => { $("conn").textContent = "reconnecting…"; };
}

async function init() {
  meta = await api("/api/meta");
  for (const f of meta.fields) {
    const [label, err] = field(f);
    (MAIN.includes(f.name) ? $("form") : $("advanced-fields")).append(label, err);
  }
  imageOptions();
  $("content").addEventListener("change", showThumbs);
  $("styles").addEventListener("change", showThumbs);
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", () => api(`/api/jobs/${$("stop").dataset.job}/stop`, {method: "POST"}).catch(() => {}));
  $("refresh").addEventListener("click", loadGallery);
  $("viewer-close").addEventListener("click", () => { $("viewer").hidden = true; });
  for (const r of document.querySelectorAll("input[name=mode]"))
    r.addEventListener("change", () => {
      const m = document.querySelector("input[name=mode]:checked").value;
      $("sweep-fields").hidden = m !== "sweep"; $("batch-fields").hidden = m !== "batch";
    });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files); });
  $("file").addEventListener("change", (e) => upload(e.target.files));
  connect();
  loadGallery();
  document.dispatchEvent(new Event("nst-ready"));
}

init().catch((e) => { $("form-msg").textContent = "cannot load the studio: " + e.message; });
