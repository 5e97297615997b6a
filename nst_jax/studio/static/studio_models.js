// nst_jax studio: trained models. List them, apply one to the content at once (POST
// /api/apply, in the request: no queue), and queue a training job (POST /api/train)
// whose curve and previews the Live panel shows like any job's.
"use strict";
(() => {
  let models = [];

  function showErrors(e, msgId) {
    $(msgId).textContent = e.message;
    for (const [k, m] of Object.entries(e.fields || {})) {
      const slot = document.querySelector(`#models-section .err[data-for="${k}"]`);
      if (slot) slot.textContent = m; else $(msgId).textContent += " — " + k + ": " + m;
    }
  }

  function clear() { for (const e of document.querySelectorAll("#models-section .err")) e.textContent = ""; }

  function showMix() {
    const m = models.find((x) => x.name === $("model").value);
    const box = $("model-mix");
    box.replaceChildren();
    if (!m || !m.styles || m.styles.length < 2) return;
    m.styles.forEach((s, i) => box.append(el("label", {title: "weight of this style"}, el("span", {text: s}),
      el("input", {type: "range", min: "0", max: "1", step: "0.05", value: i ? "0" : "1", class: "mix"}))));
  }

  async function refresh() {
    const keep = $("model").value;
    models = (await api("/api/models")).models;
    $("model").replaceChildren(...models.map((m) => el("option", {value: m.name,
      text: m.error ? `${m.name} (unreadable)` : `${m.name} — ${(m.styles || []).join(", ")}${m.steps ? `, ${m.steps} steps` : ""}`})));
    if (models.some((m) => m.name === keep)) $("model").value = keep;
    $("apply").disabled = !models.length;
    showMix();
  }

  async function apply() {
    clear(); $("apply-msg").textContent = "applying…";
    const mix = [...document.querySelectorAll("#model-mix .mix")].map((e) => Number(e.value));
    const body = {model: $("model").value, content: $("content").value, size: $("model-size").value,
                  strength: Number($("model-strength").value), ...(mix.length ? {mix} : {})};
    try {
      const r = await api("/api/apply", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
      $("apply-result").src = "/files/" + encodeURIComponent(r.file);
      $("apply-result").hidden = false;
      $("apply-msg").textContent = `${r.size[0]}x${r.size[1]} in ${(r.seconds * 1000).toFixed(0)} ms` +
        (r.tiled ? " (in tiles)" : "") + ` — saved as ${r.file}`;
      loadGallery();
    } catch (e) { showErrors(e, "apply-msg"); }
  }

  async function train() {
    clear(); $("train-msg").textContent = "";
    const body = {styles: [...$("styles").selectedOptions].map((o) => o.value)};
    for (const e of document.querySelectorAll("#train-box [name]")) if (e.value !== "") body[e.name] = e.value;
    try {
      const r = await api("/api/train", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
      myJob = r.job; shownVersion = -1;
      $("train-msg").textContent = `queued ${r.job}: it will write ${r.model}`;
    } catch (e) { showErrors(e, "train-msg"); }
  }

  document.addEventListener("nst-ready", () => {
    $("model").addEventListener("change", showMix);
    $("models-refresh").addEventListener("click", refresh);
    $("apply").addEventListener("click", apply);
    $("train").addEventListener("click", train);
    window.nstModelsRefresh = refresh;
    refresh().catch((e) => { $("apply-msg").textContent = "cannot list the models: " + e.message; });
  });
})();
