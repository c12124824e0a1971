// The collection as a virtualised grid (only the tiles on screen exist; pages of
// GET /api/images are fetched as they scroll into view) and the full-size viewer.
"use strict";

const PAGE = 120;
const GAP = 8;
const grid = { total: 0, pages: new Map(), generation: 0, columns: 1, cell: 150, loaded: false, focus: 0 };

function showBrowse() {
  showView("browse");
  if (!grid.loaded) reloadBrowse();
  else layoutGrid();
}

function browseParams(offset) {
  const params = new URLSearchParams({ offset, limit: PAGE, order: $("#order").value });
  for (const label of labelFilter()) params.append("label", label);
  return params;
}

async function reloadBrowse() {
  grid.generation += 1;
  grid.pages.clear();
  grid.loaded = true;
  try {
    await loadPage(0);
  } catch (error) {
    setStatus(error.message, "error");
    grid.total = 0;
  }
  $("#browse-grid").replaceChildren(); // tiles of the previous order or filter
  const label = labelFilter()[0];
  $("#browse-count").textContent = label ? `· ${grid.total} labelled “${label}”` : `· ${grid.total}`;
  layoutGrid();
}

async function loadPage(number) {
  if (grid.pages.has(number)) return grid.pages.get(number);
  const mine = grid.generation;
  const pending = api(`/api/images?${browseParams(number * PAGE)}`).then((body) => {
    if (mine !== grid.generation) return null;
    grid.total = body.total;
    grid.pages.set(number, body.images);
    return body.images;
  });
  grid.pages.set(number, pending);
  return pending;
}

function imageAt(index) {
  const page = grid.pages.get(Math.floor(index / PAGE));
  return Array.isArray(page) ? page[index % PAGE] : null;
}

function layoutGrid() {
  const box = $("#browse-grid");
  const width = box.clientWidth || 1;
  const minimum = width < 500 ? 110 : 160;
  grid.columns = Math.max(1, Math.floor((width + GAP) / (minimum + GAP)));
  grid.cell = (width - GAP * (grid.columns - 1)) / grid.columns;
  const rows = Math.ceil(grid.total / grid.columns);
  box.style.height = `${Math.max(0, rows * (grid.cell + GAP) - GAP)}px`;
  renderTiles();
}

function visibleRange() {
  const box = $("#browse-grid");
  const top = box.getBoundingClientRect().top;
  const row = grid.cell + GAP;
  const first = Math.max(0, Math.floor(-top / row) - 2);
  const last = Math.ceil((window.innerHeight - top) / row) + 2;
  return [first * grid.columns, Math.min(grid.total, last * grid.columns)];
}

function renderTiles() {
  if ($("#browse").hidden) return;
  const [start, end] = visibleRange();
  const box = $("#browse-grid");
  const wanted = new Set();
  for (let index = start; index < end; index += 1) {
    const image = imageAt(index);
    if (!image) {
      loadPage(Math.floor(index / PAGE)).then((images) => images && renderTiles());
      index = (Math.floor(index / PAGE) + 1) * PAGE - 1; // skip the rest of that page
      continue;
    }
    wanted.add(String(index));
    if (!box.querySelector(`[data-index="${index}"]`)) box.append(tile(image, index));
  }
  for (const node of Array.from(box.children)) {
    if (!wanted.has(node.dataset.index) && node !== document.activeElement) node.remove();
  }
}

function tile(image, index) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.dataset.index = index;
  button.dataset.id = image.id;
  button.tabIndex = index === grid.focus ? 0 : -1;
  const name = image.path.split(/[\\/]/).at(-1);
  button.setAttribute("aria-label", name);
  button.title = image.path;
  const row = Math.floor(index / grid.columns);
  const column = index % grid.columns;
  Object.assign(button.style, {
    width: `${grid.cell}px`,
    height: `${grid.cell}px`,
    transform: `translate(${column * (grid.cell + GAP)}px, ${row * (grid.cell + GAP)}px)`,
  });
  const img = document.createElement("img");
  img.src = image.thumbnail_url;
  img.alt = "";
  img.addEventListener("error", () => img.remove()); // a file gone since: an empty tile
  button.append(img);
  button.addEventListener("click", () => {
    grid.focus = index;
    openViewer(image.id, index);
  });
  return button;
}

function moveFocus(event) {
  const steps = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: grid.columns, ArrowUp: -grid.columns };
  const step = steps[event.key];
  if (step === undefined || !event.target.classList.contains("tile")) return;
  event.preventDefault();
  const target = Math.min(grid.total - 1, Math.max(0, Number(event.target.dataset.index) + step));
  focusTile(target);
}

function focusTile(index) {
  grid.focus = index;
  const box = $("#browse-grid");
  const row = Math.floor(index / grid.columns);
  const top = box.getBoundingClientRect().top + window.scrollY + row * (grid.cell + GAP);
  if (top < window.scrollY + 80 || top + grid.cell > window.scrollY + window.innerHeight) {
    window.scrollTo({ top: top - window.innerHeight / 3 });
  }
  renderTiles();
  const node = box.querySelector(`[data-index="${index}"]`);
  for (const other of box.querySelectorAll(".tile[tabindex='0']")) other.tabIndex = -1;
  if (node) {
    node.tabIndex = 0;
    node.focus({ preventScroll: true });
  }
}

// --- the viewer ----------------------------------------------------------------------------
const viewer = { id: null, index: null };

async function openViewer(id, index = null) {
  Object.assign(viewer, { id, index });
  const dialog = $("#viewer");
  $("#viewer-prev").hidden = $("#viewer-next").hidden = index === null;
  $("#viewer-image").src = `/api/images/${id}/original`;
  $("#viewer-open").href = `/api/images/${id}/original`;
  if (!dialog.open) dialog.showModal();
  try {
    const image = await api(`/api/images/${id}`);
    if (viewer.id !== id) return;
    const path = image.paths[0];
    $("#viewer-name").textContent = path.split(/[\\/]/).at(-1);
    $("#viewer-image").alt = $("#viewer-name").textContent;
    const rows = [
      ["Folder", path.split(/[\\/]/).slice(0, -1).join("/") || "/"],
      ["Size", `${pixels(image)}${fileSize(image.size)}`],
      ["Modified", new Date(image.modified * 1000).toLocaleString()],
      ["Added", new Date(image.added_at * 1000).toLocaleString()],
    ];
    if (image.paths.length > 1) rows.push(["Also at", image.paths.slice(1).join("\n")]);
    $("#viewer-details").replaceChildren(...rows.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = term;
      dd.textContent = value;
      return [dt, dd];
    }));
    $("#viewer-labels").replaceChildren(...image.labels.map(chip));
  } catch (error) {
    $("#viewer-name").textContent = error.message;
  }
}

function pixels(image) {
  return image.width === null ? "" : `${image.width} × ${image.height} px · `;
}

function fileSize(bytes) {
  return bytes < 1024 * 1024 ? `${Math.round(bytes / 1024)} KB` : megabytes(bytes);
}

function stepViewer(step) {
  if (viewer.index === null) return;
  const index = Math.min(grid.total - 1, Math.max(0, viewer.index + step));
  const show = (image) => image && openViewer(image.id, index);
  const image = imageAt(index);
  if (image) show(image);
  else loadPage(Math.floor(index / PAGE)).then(() => show(imageAt(index)));
}

function wireBrowse() {
  $("#order").addEventListener("change", reloadBrowse);
  $("#browse-grid").addEventListener("keydown", moveFocus);
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      renderTiles();
    });
  };
  window.addEventListener("scroll", schedule, { passive: true });
  window.addEventListener("resize", () => requestAnimationFrame(layoutGrid));
  const dialog = $("#viewer");
  $("#viewer-close").addEventListener("click", () => dialog.close());
  $("#viewer-prev").addEventListener("click", () => stepViewer(-1));
  $("#viewer-next").addEventListener("click", () => stepViewer(1));
  $("#viewer-similar").addEventListener("click", () => {
    dialog.close();
    searchById(viewer.id);
  });
  $("#viewer-image").addEventListener("error", () => $("#viewer-image").removeAttribute("src"));
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") stepViewer(-1);
    if (event.key === "ArrowRight") stepViewer(1);
  });
  dialog.addEventListener("close", () => {
    $("#viewer-image").removeAttribute("src");
    if (viewer.index !== null && !$("#browse").hidden) focusTile(viewer.index);
  });
  dialog.addEventListener("click", (event) => event.target === dialog && dialog.close());
}

document.addEventListener("DOMContentLoaded", wireBrowse);
