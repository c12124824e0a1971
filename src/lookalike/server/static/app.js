// lookalike's web page: plain JavaScript over the JSON API (see docs/server.md).
// app.js: searching and the result cards; browse.js: the collection grid and the viewer;
// collection.js: adding photos and the word search. Classic scripts sharing these globals.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { info: null, query: null, lastExternal: null, generation: 0, previewUrl: null, result: null };

// --- the API -------------------------------------------------------------------------------
async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error || `The server could not answer (HTTP ${response.status}).`)
      .replace("GET /api/tags lists the known words", "the word search box suggests known words");
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function searchParams() {
  const params = new URLSearchParams({ k: $("#k").value });
  for (const label of labelFilter()) params.append("label", label);
  return params;
}

function labelFilter() {
  const label = $("#label").value.trim();
  return label ? [label] : [];
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
  words(query) {
    const params = new URLSearchParams({ q: query.words, k: $("#k").value });
    return api(`/api/search/text?${params}`);
  },
};

// --- running a search ------------------------------------------------------------------------
async function run(query) {
  state.query = query;
  if (query.kind !== "id") state.lastExternal = query;
  showQuery(query);
  showView("results");
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
    if (query.kind === "file") clearPreview();
    setStatus(error.message, "error");
  }
}

function searchFile(file) {
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`“${file.name}” is not a photo: choose a JPEG, PNG, WebP or other image file.`, "error");
    return;
  }
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
  if (state.query && !$("#results").hidden) run(state.query);
  else reloadBrowse();
}

// --- rendering -------------------------------------------------------------------------------
function render(result) {
  state.result = result;
  const copies = result.matches.filter((m) => m.kind === "copy");
  const others = result.matches.filter((m) => m.kind !== "copy");
  const groups = copies.length
    ? [group("Same picture", copies), group("Similar photos", others)]
    : [group(null, others)];
  $("#results").replaceChildren(...groups.filter(Boolean));
  const labels = $("#query-labels");
  labels.replaceChildren(...result.query_labels.slice(0, 5).map(chip));
  $("#query-info").hidden = result.query_labels.length === 0;
  fitSlider(result.matches);
}

function group(title, matches) {
  if (!matches.length) return null;
  const section = document.createElement("section");
  section.className = "result-group";
  if (title) {
    const heading = document.createElement("h2");
    heading.textContent = `${title} (${matches.length})`;
    section.append(heading);
  }
  const grid = document.createElement("div");
  grid.className = "grid";
  grid.append(...matches.map(card));
  section.append(grid);
  return section;
}

function card(match) {
  const node = $("#card-template").content.firstElementChild.cloneNode(true);
  const parts = match.path.split(/[\\/]/);
  node.dataset.id = match.id;
  node.dataset.path = match.path;
  node.dataset.score = match.score;
  node.querySelector("img").src = match.thumbnail_url;
  node.querySelector("img").alt = parts.at(-1);
  node.querySelector(".rank").textContent = `#${match.rank}`;
  node.querySelector(".score").textContent = match.score.toFixed(3);
  node.querySelector(".scorebar > span").style.width = `${Math.max(0, match.score) * 100}%`;
  const why = node.querySelector(".why");
  if (match.kind) {
    why.hidden = false;
    why.textContent = explanation(match);
    why.title = match.why || "";
    node.classList.toggle("copy", match.kind === "copy");
  }
  node.querySelector(".name").textContent = parts.at(-1);
  node.querySelector(".name").title = match.path;
  node.querySelector(".folder").textContent = parts.at(-2) || "";
  node.querySelector(".labels").replaceChildren(...shownLabels(match).map(chip));
  node.querySelector(".open").href = match.original_url;
  node.querySelector(".thumb").addEventListener("click", () => searchById(match.id));
  node.querySelector(".details").addEventListener("click", () => openViewer(match.id));
  return node;
}

// The first three labels, and any label a filter or word search kept the match by after them.
function shownLabels(match) {
  const first = match.labels.slice(0, 3);
  return first.concat((match.matched_labels || []).filter((label) => !first.includes(label)));
}

function explanation(match) {
  if (match.kind !== "copy") return match.why || "Similar";
  const points = Number.isInteger(match.inliers) ? `, ${match.inliers} matching points` : "";
  return `Same picture${points}`;
}

function chip(label) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.title = `Only show photos labelled “${label}”`;
  button.addEventListener("click", () => {
    $("#label").value = label;
    rerun();
  });
  item.append(button);
  return item;
}

// The minimum-score slider spans the scores of the current results and hides cards below it.
function fitSlider(matches) {
  const slider = $("#min-score");
  const scores = matches.map((m) => m.score);
  slider.disabled = scores.length < 2;
  $("#min-score-field").hidden = slider.disabled;
  if (slider.disabled) return showMinScore();
  slider.min = Math.min(...scores).toFixed(3);
  slider.max = Math.max(...scores).toFixed(3);
  slider.value = slider.min;
  showMinScore();
}

function showMinScore() {
  const slider = $("#min-score");
  const threshold = Number(slider.value);
  const off = slider.disabled || threshold <= Number(slider.min);
  $("#min-score-value").textContent = off ? "off" : threshold.toFixed(2);
  let shown = 0;
  for (const node of document.querySelectorAll("#results .card")) {
    node.hidden = !off && Number(node.dataset.score) < threshold;
    if (!node.hidden) shown += 1;
  }
  for (const section of document.querySelectorAll("#results .result-group")) {
    section.hidden = !section.querySelector(".card:not([hidden])");
  }
  if (!off && state.result) setStatus(`${shown} of ${state.result.matches.length} matches score ${threshold.toFixed(2)} or more`);
}

function clearPreview() {
  $("#query-preview").hidden = true;
  $("#dropzone").classList.remove("has-query");
}

function showQuery(query) {
  const preview = $("#query-preview");
  const urlBox = $("#query-url");
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  preview.hidden = !["file", "id"].includes(query.kind);
  urlBox.hidden = !["url", "words"].includes(query.kind);
  if (query.kind === "file") preview.src = state.previewUrl = URL.createObjectURL(query.file);
  if (query.kind === "id") preview.src = `/api/images/${query.id}/thumbnail`;
  if (query.kind === "url") urlBox.textContent = query.url;
  if (query.kind === "words") urlBox.textContent = `“${query.words}”`;
  $("#dropzone").classList.add("has-query");
}

function summary(result, ms) {
  const n = result.matches.length;
  if (n === 0) {
    const label = labelFilter()[0];
    return label ? `No photos labelled “${label}” match. Clear the “Only photos of” box to search everything.` : "No matches.";
  }
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

// --- views: search results or the collection ---------------------------------------------------
function showView(view) {
  $("#results").hidden = view !== "results";
  $("#browse").hidden = view !== "browse" || !state.info?.images;
  $("#empty").hidden = view !== "browse" || Boolean(state.info?.images) || !state.info;
  if (view === "browse") {
    setStatus("");
    $("#min-score").disabled = true;
    $("#min-score-field").hidden = true;
    showMinScore();
  }
}

// --- collection stats ------------------------------------------------------------------------
async function loadInfo() {
  try {
    const info = await api("/api/info");
    state.info = info;
    $("#stats").textContent = `${info.images.toLocaleString()} photo${info.images === 1 ? "" : "s"}`;
    $("#stats").title = `model ${info.model} · version ${info.version}`;
    $("#mode").hidden = !info.read_only;
    $("#add-photos").hidden = info.read_only;
    const options = info.labels.map((label) => new Option(label));
    $("#label-list").replaceChildren(...options);
    emptyMessage(info);
  } catch (error) {
    $("#stats").textContent = "collection unavailable";
    setStatus(error.message, "error");
  }
}

function emptyMessage(info) {
  const text = info.read_only
    ? "No photos here yet. Whoever runs this server can add a folder of photos; then they appear here."
    : "No photos here yet. Click “Add photos” above and give a folder of photos on this computer.";
  const paragraph = document.createElement("p");
  paragraph.textContent = text;
  $("#empty").replaceChildren(paragraph);
}

// --- wiring ----------------------------------------------------------------------------------
function firstFile(files) {
  return Array.from(files || [])[0];
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
  $("#query-preview").addEventListener("error", clearPreview); // never a broken-image icon
  const overlay = $("#drop-overlay");
  let depth = 0; // dragenter/dragleave fire for every child crossed
  document.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    overlay.hidden = false;
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    overlay.hidden = depth > 0;
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const file = firstFile(event.dataTransfer.files);
    const url = event.dataTransfer.getData("text/uri-list").split("\n")[0].trim();
    if (file) searchFile(file);
    else if (url) searchUrl(url);
  });
  document.addEventListener("paste", (event) => {
    if (event.target.closest("input")) return; // pasting text into a field
    const file = firstFile(event.clipboardData?.files);
    if (file) searchFile(file);
  });
}

function wireControls() {
  $("#url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchUrl($("#url-input").value.trim());
  });
  $("#k").addEventListener("change", () => state.query && !$("#results").hidden && run(state.query));
  $("#label").addEventListener("change", rerun);
  $("#min-score").addEventListener("input", showMinScore);
  $("#nav-browse").addEventListener("click", () => location.hash === "#browse" && showBrowse());
}

function followHash() {
  const id = new URLSearchParams(location.hash.slice(1)).get("id");
  if (id && /^\d+$/.test(id)) run({ kind: "id", id: Number(id) });
  else if (location.hash === "#browse" || !state.lastExternal) showBrowse();
  else run(state.lastExternal);
}

document.addEventListener("DOMContentLoaded", async () => {
  wireDropzone();
  wireControls();
  window.addEventListener("hashchange", followHash);
  await loadInfo();
  followHash();
});
