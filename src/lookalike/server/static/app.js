// lookalike's web page: plain JavaScript over the JSON API (see docs/server.md).
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { info: null, query: null, lastExternal: null, generation: 0, previewUrl: null };

// --- the API -------------------------------------------------------------------------------
async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `request failed (HTTP ${response.status})`);
  return body;
}

function searchParams() {
  const params = new URLSearchParams({ k: $("#k").value });
  const label = $("#label").value.trim();
  if (label) params.append("label", label);
  const minScore = Number($("#min-score").value);
  if (minScore > 0) params.set("min_score", String(minScore));
  return params;
}

const runners = {
  file(query) {
    const form = new FormData();
    form.append("file", query.file, query.file.name || "pasted-image");
    return api(`/api/search?${searchParams()}`, { method: "POST", body: form });
  },
  url(query) {
    return api(`/api/search/url?${searchParams()}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ url: query.url }),
    });
  },
  id(query) {
    return api(`/api/images/${query.id}/similar?${searchParams()}`);
  },
};

// --- running a search ------------------------------------------------------------------------
async function run(query) {
  state.query = query;
  if (query.kind !== "id") state.lastExternal = query;
  showQuery(query);
  const mine = ++state.generation;
  setStatus("Searching…", "busy");
  const started = performance.now();
  try {
    const result = await runners[query.kind](query);
    if (mine !== state.generation) return; // a newer search superseded this one
    render(result);
    setStatus(summary(result, performance.now() - started));
  } catch (error) {
    if (mine !== state.generation) return;
    $("#results").replaceChildren();
    $("#query-info").hidden = true;
    setStatus(error.message, "error");
  }
}

function searchFile(file) {
  const limit = state.info?.limits?.max_upload_bytes;
  if (limit && file.size > limit) {
    setStatus(`That file is ${megabytes(file.size)}; the limit is ${megabytes(limit)}.`, "error");
    return;
  }
  history.replaceState(null, "", location.pathname);
  run({ kind: "file", file });
}

function searchUrl(url) {
  history.replaceState(null, "", location.pathname);
  run({ kind: "url", url });
}

function searchById(id) {
  if (location.hash === `#id=${id}`) run({ kind: "id", id });
  else location.hash = `id=${id}`; // the hashchange handler runs it; Back returns here
}

function rerun() {
  if (state.query) run(state.query);
}

// --- rendering -------------------------------------------------------------------------------
function render(result) {
  const cards = result.matches.map(card);
  $("#results").replaceChildren(...cards);
  $("#empty").hidden = true;
  const labels = $("#query-labels");
  labels.replaceChildren(...result.query_labels.slice(0, 5).map(chip));
  $("#query-info").hidden = result.query_labels.length === 0;
}

function card(match) {
  const node = $("#card-template").content.firstElementChild.cloneNode(true);
  const parts = match.path.split(/[\\/]/);
  node.dataset.id = match.id;
  node.dataset.path = match.path;
  node.querySelector("img").src = match.thumbnail_url;
  node.querySelector("img").alt = parts.at(-1);
  node.querySelector(".rank").textContent = `#${match.rank}`;
  node.querySelector(".score").textContent = match.score.toFixed(3);
  node.querySelector(".scorebar > span").style.width = `${Math.max(0, match.score) * 100}%`;
  node.querySelector(".name").textContent = parts.at(-1);
  node.querySelector(".name").title = match.path;
  node.querySelector(".folder").textContent = parts.at(-2) || "";
  node.querySelector(".labels").replaceChildren(...match.labels.slice(0, 3).map(chip));
  node.querySelector(".open").href = match.original_url;
  node.querySelector(".thumb").addEventListener("click", () => searchById(match.id));
  return node;
}

function chip(label) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.title = `Only show images labelled “${label}”`;
  button.addEventListener("click", () => {
    $("#label").value = label;
    rerun();
  });
  item.append(button);
  return item;
}

function showQuery(query) {
  const preview = $("#query-preview");
  const urlBox = $("#query-url");
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  preview.hidden = query.kind === "url";
  urlBox.hidden = query.kind !== "url";
  if (query.kind === "file") preview.src = state.previewUrl = URL.createObjectURL(query.file);
  if (query.kind === "id") preview.src = `/api/images/${query.id}/thumbnail`;
  if (query.kind === "url") urlBox.textContent = query.url;
  $("#dropzone").classList.add("has-query");
}

function summary(result, ms) {
  const n = result.matches.length;
  if (n === 0) return "No matches. Try a lower minimum score or another label.";
  const route = result.route === "categories+global" ? " (searched everything)" : "";
  return `${n} match${n === 1 ? "" : "es"} in ${Math.round(ms)} ms${route}`;
}

function setStatus(text, kind = "") {
  const status = $("#status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

function megabytes(bytes) {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// --- collection stats ------------------------------------------------------------------------
async function loadInfo() {
  try {
    const info = await api("/api/info");
    state.info = info;
    $("#stats").textContent = `${info.images.toLocaleString()} images · ${info.model}`;
    $("#mode").hidden = !info.read_only;
    const options = info.labels.map((label) => new Option(label));
    $("#label-list").replaceChildren(...options);
  } catch (error) {
    $("#stats").textContent = "index unavailable";
    setStatus(error.message, "error");
  }
}

// --- wiring ----------------------------------------------------------------------------------
function firstImage(files) {
  return Array.from(files || []).find((f) => f.type.startsWith("image/") || f.type === "");
}

function wireDropzone() {
  const zone = $("#dropzone");
  const input = $("#file-input");
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    if (input.files.length) searchFile(input.files[0]);
    input.value = ""; // choosing the same file again still fires "change"
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = firstImage(event.dataTransfer.files);
    const url = event.dataTransfer.getData("text/uri-list").split("\n")[0].trim();
    if (file) searchFile(file);
    else if (url) searchUrl(url);
  });
  document.addEventListener("paste", (event) => {
    if (event.target.closest("input")) return; // pasting text into a field
    const file = firstImage(event.clipboardData?.files);
    if (file) searchFile(file);
  });
}

function wireControls() {
  $("#url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchUrl($("#url-input").value.trim());
  });
  $("#k").addEventListener("change", rerun);
  $("#label").addEventListener("change", rerun);
  const slider = $("#min-score");
  const showMinScore = () => {
    $("#min-score-value").textContent = Number(slider.value) > 0 ? slider.value : "off";
  };
  slider.addEventListener("input", showMinScore);
  slider.addEventListener("change", rerun);
  showMinScore();
}

function followHash() {
  const id = new URLSearchParams(location.hash.slice(1)).get("id");
  if (id && /^\d+$/.test(id)) run({ kind: "id", id: Number(id) });
  else if (state.lastExternal) run(state.lastExternal);
}

document.addEventListener("DOMContentLoaded", () => {
  wireDropzone();
  wireControls();
  window.addEventListener("hashchange", followHash);
  loadInfo();
  if (location.hash) followHash();
});
