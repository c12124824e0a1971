// Adding photos from the page (POST /api/index with the server's write token, progress by
// polling GET /api/index) and the word search (GET /api/search/text, suggestions from
// GET /api/tags), shown only when the server has those endpoints (its /openapi.json lists them).
"use strict";

const TOKEN_KEY = "lookalike-token";

function toggleIndexer() {
  const panel = $("#indexer");
  panel.hidden = !panel.hidden;
  $("#add-photos").setAttribute("aria-expanded", String(!panel.hidden));
  if (!panel.hidden) {
    $("#index-token").value = sessionStorage.getItem(TOKEN_KEY) || "";
    $("#index-folder").focus();
    loadFolders();
  }
}

async function loadFolders() {
  // Suggest the folders of the photos on screen in the grid (the first page).
  const images = await api(`/api/images?limit=200&order=folder`).catch(() => ({ images: [] }));
  const folders = new Set(images.images.map((i) => i.path.split(/[\\/]/).slice(0, -1).join("/")));
  $("#folder-list").replaceChildren(...Array.from(folders, (f) => new Option(f)));
}

async function startIndexing(body) {
  const token = $("#index-token").value.trim();
  if (!token) {
    indexStatus("Enter the write token the server was started with.", true);
    $("#index-token").focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await api("/api/index", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
  } catch (error) {
    if (error.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    indexStatus(error.status === 401 ? "That token is not the server's write token." : error.message, true);
    return;
  }
  $("#index-failures").replaceChildren();
  pollIndexing();
}

function indexStatus(text, failed = false) {
  const status = $("#index-status");
  status.textContent = text;
  status.classList.toggle("error-text", failed);
}

async function pollIndexing() {
  let job;
  try {
    job = await api("/api/index");
  } catch (error) {
    indexStatus(error.message, true);
    return;
  }
  const progress = $("#index-progress");
  progress.hidden = job.state !== "running";
  if (job.state === "running") {
    progress.max = job.total || 1;
    progress.value = job.done || 0;
    const of = job.total ? ` of ${job.total.toLocaleString()}` : "";
    indexStatus(`Adding photos: ${(job.done || 0).toLocaleString()}${of}…`);
    setTimeout(pollIndexing, 1000);
    return;
  }
  if (job.state === "failed") indexStatus(`Adding photos failed: ${job.error}`, true);
  if (job.state === "done") finished(job);
}

function finished(job) {
  const report = job.report || {};
  const failed = report.failed || [];
  const added = (report.embedded || 0) + (report.reused || 0);
  indexStatus(
    `Done: ${added.toLocaleString()} new, ${(report.unchanged || 0).toLocaleString()} unchanged` +
      `${report.removed ? `, ${report.removed} removed` : ""}` +
      `${failed.length ? `, ${failed.length} could not be read:` : "."}`,
    failed.length > 0,
  );
  $("#index-failures").replaceChildren(...failed.map((f) => {
    const item = document.createElement("li");
    item.textContent = `${f.path}: ${f.reason}`;
    return item;
  }));
  for (const folder of job.missing || []) {
    const item = document.createElement("li");
    item.textContent = `${folder}: the folder is gone`;
    $("#index-failures").append(item);
  }
  loadInfo().then(() => {
    grid.loaded = false;
    if ($("#results").hidden) showBrowse();
  });
}

function wireIndexer() {
  $("#add-photos").addEventListener("click", toggleIndexer);
  $("#index-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const folder = $("#index-folder").value.trim();
    if (!folder) {
      indexStatus("Type the full path of a folder on the computer running lookalike.", true);
      return;
    }
    startIndexing({ paths: [folder] });
  });
  $("#index-rescan").addEventListener("click", () => startIndexing({ reindex: true }));
}

// --- word search -----------------------------------------------------------------------------
async function probeWordSearch() {
  // Asking the API description rather than the endpoint: no 404 in the browser's console.
  const description = await api("/openapi.json").catch(() => ({}));
  const paths = description.paths || {};
  $("#tag-form").hidden = !(paths["/api/search/text"] && paths["/api/tags"]);
}

let suggestTimer = null;

function suggestWords() {
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(async () => {
    const prefix = $("#tag-input").value.trim().split(/\s+/).at(-1) || "";
    const params = new URLSearchParams({ prefix, limit: 12 });
    const body = await api(`/api/tags?${params}`).catch(() => ({ tags: [] }));
    const options = (body.tags || []).map((tag) => {
      const option = new Option(tag.word);
      option.label = `${tag.images} photos`;
      return option;
    });
    $("#tag-list").replaceChildren(...options);
  }, 150);
}

function wireWordSearch() {
  $("#tag-input").addEventListener("input", suggestWords);
  $("#tag-form").addEventListener("submit", (event) => {
    event.preventDefault();
    history.replaceState(null, "", location.pathname);
    run({ kind: "words", words: $("#tag-input").value.trim() });
  });
  probeWordSearch();
}

document.addEventListener("DOMContentLoaded", () => {
  wireIndexer();
  wireWordSearch();
});
