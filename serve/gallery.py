# ruff: noqa: E501
# (long lines are HTML and JavaScript)
"""The pages served at ``/`` (gallery) and ``/docs`` (API reference).

Plain HTML + JS with no external resources, so both work on a machine
without internet access. Kept as Python strings so they ship inside the
package without package-data configuration.
"""

GALLERY_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keras-mergan gallery</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }
  h1 { font-size: 1.4rem; margin: 0 0 1rem; }
  h2 { font-size: 1.1rem; margin: 1.5rem 0 0.5rem; }
  form { display: flex; flex-wrap: wrap; gap: 0.8rem; align-items: end; }
  label { display: flex; flex-direction: column; font-size: 0.85rem; gap: 0.2rem; }
  select, input, button { font-size: 1rem; padding: 0.2rem 0.4rem; }
  #status { min-height: 1.4rem; margin: 0.8rem 0; color: #555; }
  #status.error { color: #b00020; }
  #grid { image-rendering: pixelated; background: #000; min-width: 64px; min-height: 64px; }
  #overview { display: flex; flex-wrap: wrap; gap: 0.8rem; }
  figure { margin: 0; text-align: center; cursor: pointer; }
  figure img { image-rendering: pixelated; display: block; }
  figure.selected img { outline: 3px solid #1a73e8; }
  figcaption { font-size: 0.85rem; margin-top: 0.2rem; }
</style>
</head>
<body>
<h1>keras-mergan: samples of each task's generator</h1>
<form id="controls" onsubmit="return false">
  <label>Task <select id="task"></select></label>
  <label>Category <select id="category"></select></label>
  <label>Samples <select id="n">
    <option>4</option><option selected>16</option><option>36</option><option>64</option>
  </select></label>
  <label>Seed <input id="seed" type="number" min="0" value="0" style="width: 7rem"></label>
  <button id="reseed" type="button">New seed</button>
</form>
<div id="status" role="status">Loading tasks&hellip;</div>
<img id="grid" alt="generated samples">
<h2 id="overview-title">All categories learned by this task</h2>
<div id="overview"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let tasks = [];

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function gridUrl(task, category, n, seed, scale) {
  const q = new URLSearchParams({task: String(task), category: String(category),
                                 n: String(n), seed: String(seed), scale: String(scale)});
  return "/api/grid.png?" + q.toString();
}

async function explainFailure(url) {
  try {
    const response = await fetch(url);
    const body = await response.json();
    return body.error ? body.error.message : response.statusText;
  } catch (e) {
    return String(e);
  }
}

function currentTask() {
  return tasks.find((t) => String(t.task) === $("task").value);
}

function fillCategories() {
  const task = currentTask();
  const select = $("category");
  const previous = select.value;
  select.replaceChildren();
  if (!task || !task.categories) return;
  for (const c of task.categories) {
    const option = document.createElement("option");
    option.value = String(c.index);
    option.textContent = c.name + (String(c.index) === c.name ? "" : " (" + c.index + ")");
    select.appendChild(option);
  }
  const keep = task.categories.some((c) => String(c.index) === previous);
  select.value = keep ? previous : String(task.categories[task.categories.length - 1].index);
}

function showGrid() {
  const task = currentTask();
  if (!task) return;
  const n = Number($("n").value), seed = Math.max(0, Math.floor(Number($("seed").value) || 0));
  const url = gridUrl(task.task, $("category").value, n, seed, 3);
  const img = $("grid");
  setStatus("Generating\\u2026", false);
  img.onload = () => {
    const name = $("category").selectedOptions[0].textContent;
    setStatus("Task " + task.task + ", category " + name + ", " + n + " samples, seed " + seed, false);
  };
  img.onerror = async () => setStatus(await explainFailure(url), true);
  img.src = url;
  for (const fig of $("overview").children) {
    fig.classList.toggle("selected", fig.dataset.index === $("category").value);
  }
  location.hash = new URLSearchParams({task: String(task.task), category: $("category").value}).toString();
}

function showOverview() {
  const task = currentTask();
  const box = $("overview");
  box.replaceChildren();
  if (!task || !task.categories) return;
  const seed = Math.max(0, Math.floor(Number($("seed").value) || 0));
  for (const c of task.categories) {
    const fig = document.createElement("figure");
    fig.dataset.index = String(c.index);
    const img = document.createElement("img");
    img.src = gridUrl(task.task, c.index, 4, seed, 2);
    img.alt = "samples of " + c.name;
    const caption = document.createElement("figcaption");
    caption.textContent = c.name;
    fig.append(img, caption);
    fig.addEventListener("click", () => { $("category").value = String(c.index); showGrid(); });
    box.appendChild(fig);
  }
}

function refresh() { fillCategories(); showOverview(); showGrid(); }

async function init() {
  let body;
  try {
    const response = await fetch("/api/tasks");
    body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  } catch (e) {
    setStatus("Cannot load tasks: " + e.message, true);
    return;
  }
  tasks = body.tasks.filter((t) => t.categories);
  if (tasks.length === 0) { setStatus("No exported task yet.", true); return; }
  for (const t of tasks) {
    const option = document.createElement("option");
    option.value = String(t.task);
    const added = t.new_categories.map((c) => c.name).join(", ");
    option.textContent = "Task " + t.task + (added ? " (+" + added + ")" : "");
    $("task").appendChild(option);
  }
  const wanted = new URLSearchParams(location.hash.slice(1));
  const fromHash = tasks.find((t) => String(t.task) === wanted.get("task"));
  $("task").value = String((fromHash || tasks[tasks.length - 1]).task);
  fillCategories();
  if (wanted.get("category") && [...$("category").options].some((o) => o.value === wanted.get("category"))) {
    $("category").value = wanted.get("category");
  }
  showOverview();
  showGrid();
}

$("task").addEventListener("change", refresh);
$("category").addEventListener("change", showGrid);
$("n").addEventListener("change", showGrid);
$("seed").addEventListener("change", () => { showOverview(); showGrid(); });
$("reseed").addEventListener("click", () => {
  $("seed").value = String(Math.floor(Math.random() * 1e9));
  showOverview();
  showGrid();
});
init();
</script>
</body>
</html>
"""

API_DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keras-mergan serve: API</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; max-width: 60rem; color: #222; }
  h1 { font-size: 1.4rem; }
  section { border-top: 1px solid #ddd; padding: 0.6rem 0; }
  .method { display: inline-block; min-width: 3.5rem; font-weight: bold; color: #1a73e8; }
  code, pre { font-family: ui-monospace, monospace; }
  pre { background: #f4f4f4; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }
  table { border-collapse: collapse; margin: 0.4rem 0; font-size: 0.9rem; }
  td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; }
</style>
</head>
<body>
<h1 id="title">API</h1>
<p id="description"></p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3).</p>
<div id="paths">Loading&hellip;</div>
<script>
"use strict";
function element(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}
async function init() {
  const spec = await (await fetch("/openapi.json")).json();
  document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
  document.getElementById("description").textContent = spec.info.description || "";
  const box = document.getElementById("paths");
  box.replaceChildren();
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const section = element("section");
      const heading = element("div");
      heading.append(element("span", method.toUpperCase()), " ", element("code", path));
      heading.firstChild.className = "method";
      section.append(heading, element("div", operation.summary || ""));
      const parameters = operation.parameters || [];
      if (parameters.length) {
        const table = element("table");
        const header = element("tr");
        header.append(element("th", "parameter"), element("th", "in"), element("th", "description"));
        table.append(header);
        for (const p of parameters) {
          const row = element("tr");
          row.append(element("td", p.name + (p.required ? " (required)" : "")),
                     element("td", p.in), element("td", p.description || ""));
          table.append(row);
        }
        section.append(table);
      }
      const body = operation.requestBody && operation.requestBody.content["application/json"];
      if (body && body.example) {
        section.append(element("pre", JSON.stringify(body.example)));
      }
      box.append(section);
    }
  }
}
init().catch((e) => { document.getElementById("paths").textContent = "Cannot load /openapi.json: " + e; });
</script>
</body>
</html>
"""
