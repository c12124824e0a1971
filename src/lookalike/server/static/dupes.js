/* The duplicates view: pages of /api/dupes as rows of thumbnails, the suggested keep marked,
   file details on hover or click, and "not a duplicate" (POST, with the server's token). */
"use strict";

const $ = (id) => document.getElementById(id);
const state = { offset: 0, limit: 20, total: 0, readOnly: true };

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function status(text, kind) {
  const box = $("status");
  box.textContent = text || "";
  box.className = "status" + (kind ? " " + kind : "");
}

function showDetails(file, group) {
  const box = $("details");
  box.replaceChildren();
  const list = el("dl");
  const rows = [
    ["path", file.path], ["pixels", `${file.width} × ${file.height}`],
    ["size", `${file.size.toLocaleString()} bytes`], ["modified", file.modified],
    ["format", file.format || "?"], ["image id", String(file.image_id)],
    ["keep", file.keep ? `yes: ${group.reason}` : "no"],
  ];
  for (const [name, value] of rows) {
    list.append(el("dt", "", name), el("dd", "", value));
  }
  const open = el("a", "open", "open the original");
  open.href = file.original_url;
  open.target = "_blank";
  open.rel = "noopener";
  box.append(list, open);
  box.hidden = false;
}

function card(file, group) {
  const item = el("figure", "card" + (file.keep ? " keep" : ""));
  item.tabIndex = 0;
  const thumb = el("div", "thumb");
  const img = el("img");
  img.src = file.thumbnail_url;
  img.alt = file.path;
  img.loading = "lazy";
  thumb.append(img);
  if (file.keep) thumb.append(el("span", "keep-badge", "keep"));
  const meta = el("figcaption", "meta");
  const parts = file.path.split(/[\\/]/);
  meta.append(el("div", "name", parts.pop()), el("div", "folder", parts.join("/")),
              el("div", "folder", `${file.width}×${file.height} · ${file.size.toLocaleString()} B · ${file.format || "?"}`));
  item.title = `${file.path}\n${file.width}×${file.height}, ${file.size} bytes, ${file.modified}`;
  item.append(thumb, meta);
  for (const event of ["click", "mouseenter", "focus"]) {
    item.addEventListener(event, () => showDetails(file, group));
  }
  return item;
}

async function notDuplicate(group, button) {
  const token = $("token").value.trim();
  if (!token) {
    status("enter the server's token to mark groups", "error");
    $("token").focus();
    return;
  }
  sessionStorage.setItem("lookalike-token", token);
  button.disabled = true;
  const response = await fetch("/api/dupes/not-duplicate", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ image_ids: group.image_ids }),
  });
  const body = await response.json();
  if (!response.ok) {
    button.disabled = false;
    status(body.error || `error ${response.status}`, "error");
    return;
  }
  status(`marked ${body.marked_pairs} pairs as not duplicates`);
  load();
}

function groupRow(group, number) {
  const box = el("section", "dupe-group");
  box.dataset.imageIds = group.image_ids.join(" ");
  const head = el("div", "dupe-head");
  head.append(el("strong", "", `Group ${number}`), el("span", "", `${group.files.length} files`),
              el("span", "reason", `keep ${group.keep.split(/[\\/]/).pop()}: ${group.reason}`));
  if (!state.readOnly && group.level !== "exact") {
    const button = el("button", "not-duplicate", "Not a duplicate");
    button.type = "button";
    button.addEventListener("click", () => notDuplicate(group, button));
    head.append(button);
  }
  const row = el("div", "dupe-row");
  for (const file of group.files) row.append(card(file, group));
  box.append(head, row);
  return box;
}

async function load() {
  const level = $("level").value;
  const minGroup = Math.max(2, Number($("min-group").value) || 2);
  status("looking for duplicates…", "busy");
  const query = new URLSearchParams({ level, offset: state.offset, limit: state.limit, min_group: minGroup });
  const response = await fetch(`/api/dupes?${query}`);
  const body = await response.json();
  if (!response.ok) {
    status(body.error || `error ${response.status}`, "error");
    return;
  }
  state.total = body.total_groups;
  const groups = $("groups");
  groups.replaceChildren();
  body.groups.forEach((group, i) => groups.append(groupRow(group, state.offset + i + 1)));
  if (!body.groups.length) {
    const empty = el("div", "empty");
    empty.append(el("p", "", `No ${level} groups.`));
    groups.append(empty);
  }
  const pending = !body.pending ? ""
    : body.pending_included ? ` · ${body.pending} new images checked for this view only (lookalike dupes stores the check)`
    : ` · ${body.pending} new images not checked yet: run lookalike dupes to include them`;
  status(`${body.total_groups} ${level} group${body.total_groups === 1 ? "" : "s"}${pending}`);
  const last = Math.min(state.offset + state.limit, state.total);
  $("page").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= state.total;
}

async function start() {
  try {
    const info = await (await fetch("/api/info")).json();
    state.readOnly = Boolean(info.read_only);
    $("stats").textContent = `${info.images} images · duplicates`;
  } catch (error) {
    state.readOnly = true;
  }
  $("mode").hidden = !state.readOnly;
  $("token-field").hidden = state.readOnly;
  $("token").value = sessionStorage.getItem("lookalike-token") || "";
  $("level").addEventListener("change", () => { state.offset = 0; load(); });
  $("min-group").addEventListener("change", () => { state.offset = 0; load(); });
  $("dupes-form").addEventListener("submit", (event) => event.preventDefault());
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; load(); });
  load();
}

start();
