// The page: search with suggestions, a song card with its explanation, "try your own song", scoring a file, the
// model panel.
// Plain JavaScript talking to the JSON API of the same origin; nothing is loaded from elsewhere.
"use strict";

const NAMES = {
  popularity: "popularity", acousticness: "acousticness", danceability: "danceability",
  duration_ms: "duration", energy: "energy", instrumentalness: "instrumentalness", liveness: "liveness",
  loudness: "loudness", speechiness: "speechiness", tempo: "tempo", genre: "genre", key: "key", mode: "mode",
  time_signature: "time signature", version: "version (remix, live…)", artist: "artist's history",
};
const DEBOUNCE_MS = 150;

const $ = (id) => document.getElementById(id);
const fixed = (x) => Number(x).toFixed(3);

function sentence(text) {
  const s = String(text).trim();
  const capital = s.charAt(0).toUpperCase() + s.slice(1);
  return /[.!?]$/.test(capital) ? capital : capital + ".";
}

// Fetch JSON from the API; a failure becomes an Error whose message is a sentence for people.
async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } });
  } catch (error) {
    throw new Error("The server could not be reached; check that it is running and try again.");
  }
  let data = null;
  try { data = await response.json(); } catch (error) { data = null; }
  if (!response.ok) {
    const reason = data && data.message ? data.message : `the server answered ${response.status}`;
    const error = new Error(sentence(reason));
    error.data = data;
    throw error;
  }
  return data;
}

// Show (or, with "", clear) an error where it belongs: "notice" (the page), "find-error", "own-error".
function showNotice(text, where = "notice") {
  const notice = $(where);
  notice.textContent = text;
  notice.hidden = !text;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- the explanation chart ------------------------------------------------------------------
function renderChart(list, contributions) {
  const entries = Object.entries(contributions).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const largest = Math.max(1e-9, ...entries.map(([, v]) => Math.abs(v)));
  list.replaceChildren();
  for (const [group, value] of entries) {
    const up = value >= 0;
    const row = element("li", value === 0 ? "zero" : up ? "up" : "down");
    row.dataset.group = group;
    row.dataset.value = String(value);
    row.append(element("span", "name", NAMES[group] || group));
    const axis = element("span", "axis");
    const bar = element("span", "bar");
    bar.style.width = `${(50 * Math.abs(value)) / largest}%`;  // CSSOM, which the page's CSP allows
    axis.append(bar);
    row.append(axis);
    const shown = value === 0 ? fixed(0) : `${up ? "+" : "\u2212"}${fixed(Math.abs(value))}`;
    const label = element("span", "value", shown);
    label.setAttribute("aria-label", value === 0 ? "as in the typical song: no change"
      : `${up ? "raises" : "lowers"} valence by ${fixed(Math.abs(value))}`);
    row.append(label);
    list.append(row);
  }
}

function whyText(explanation) {
  return `Starting from ${fixed(explanation.base_value)}, the prediction for a typical song, each feature ` +
    `below moves it (green up, red down) to ${fixed(explanation.prediction)}.`;
}

function renderMoods(container, probabilities) {
  container.replaceChildren();
  if (!probabilities) return;
  for (const [mood, p] of Object.entries(probabilities)) {
    const row = element("div", "mood");
    row.append(element("span", "label", mood));
    const track = element("span", "track");
    const fill = element("span", "fill");
    fill.style.width = `${100 * p}%`;
    track.append(fill);
    row.append(track);
    row.append(element("span", "value", `${Math.round(100 * p)} %`));
    row.setAttribute("aria-label", `${mood}: ${Math.round(100 * p)} percent`);
    container.append(row);
  }
}

// ---- a song of the catalog ----------------------------------------------------------------------
let currentSong = null;

async function loadSong(params) {
  const query = new URLSearchParams(params).toString();
  try {
    const [prediction, explanation] = await Promise.all([api(`/predict?${query}`), api(`/explain?${query}`)]);
    showNotice("", "find-error");
    renderSong(prediction, explanation);
    history.replaceState(null, "", `/?${new URLSearchParams({ track_id: prediction.track_id })}`);
  } catch (error) {
    showNotice(error.message, "find-error");
    showSuggestions((error.data && error.data.suggestions) || []);
  }
}

// A "not found" answer's suggestions (close names the API found), each a button that opens that song.
function showSuggestions(suggestions) {
  if (!suggestions.length) return;
  const notice = $("find-error");
  notice.append(" Did you mean: ");
  suggestions.forEach((song, i) => {
    const button = element("button", "suggestion", `${song.track_name || "(untitled)"} by ${song.artist_name}`);
    button.type = "button";
    button.dataset.trackId = song.track_id;
    button.addEventListener("click", () => loadSong({ track_id: song.track_id }));
    notice.append(button, i + 1 < suggestions.length ? ", " : "?");
  });
}

// "0.13 to 0.58 (90 %)": the range that holds the valence with that probability (docs/api.md, "Intervals").
function intervalText(interval) {
  return interval ? `${fixed(interval.low)} to ${fixed(interval.high)} (${Math.round(100 * interval.level)} %)` : "";
}

// The interval as a band on the 0-1 scale.
function drawBand(band, interval) {
  band.hidden = !interval;
  if (!interval) return;
  band.style.left = `${100 * interval.low}%`;
  band.style.width = `${100 * (interval.high - interval.low)}%`;
}

function renderSong(prediction, explanation) {
  currentSong = explanation;
  $("song").hidden = false;
  $("song-title").textContent = `${prediction.track_name || "(untitled)"} \u2014 ${prediction.artist_name}`;
  $("song-genres").textContent = `Genres: ${prediction.genres.join(", ")}`;
  $("song-prediction").textContent = fixed(prediction.prediction);
  $("song-interval").textContent = intervalText(prediction.interval);
  drawBand($("band-predicted"), prediction.interval);
  const hasActual = typeof prediction.expected === "number";
  $("song-honest").hidden = !hasActual;
  $("song-actual").textContent = hasActual ? fixed(prediction.expected) : "no measured valence";
  $("song-mood").textContent = prediction.mood || "no mood model loaded";
  $("marker-predicted").style.left = `${100 * prediction.prediction}%`;
  $("marker-actual").hidden = !hasActual;
  if (hasActual) $("marker-actual").style.left = `${100 * prediction.expected}%`;
  renderMoods($("song-moods"), prediction.mood_probabilities);
  $("song-why").textContent = whyText(explanation);
  renderChart($("song-chart"), explanation.contributions);
}

// ---- search with suggestions ---------------------------------------------------------------------
function setupSearch() {
  const input = $("search");
  const list = $("suggestions");
  let timer = null;
  let active = -1;
  let asked = 0;

  const close = () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };
  const highlight = (index) => {
    const items = [...list.children];
    if (!items.length) return;
    active = (index + items.length) % items.length;
    items.forEach((item, i) => item.setAttribute("aria-selected", String(i === active)));
    input.setAttribute("aria-activedescendant", items[active].id);
    items[active].scrollIntoView({ block: "nearest" });
  };
  const pick = (item) => {
    input.value = `${item.dataset.artist} \u2014 ${item.dataset.track}`;
    close();
    loadSong({ track_id: item.dataset.trackId });
  };
  const suggest = async () => {
    const q = input.value.trim();
    const ticket = ++asked;
    if (q.length < 2) { close(); return; }
    let answer;
    try {
      answer = await api(`/search?${new URLSearchParams({ q })}`);
    } catch (error) {
      showNotice(error.message, "find-error");
      return;
    }
    if (ticket !== asked) return;  // a newer query is on its way
    list.replaceChildren();
    answer.results.forEach((song, i) => {
      const item = element("li");
      item.id = `suggestion-${i}`;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", "false");
      item.dataset.trackId = song.track_id;
      item.dataset.artist = song.artist_name;
      item.dataset.track = song.track_name;
      item.append(element("span", "what", song.track_name || "(untitled)"));
      item.append(document.createTextNode(" "));
      item.append(element("span", "who", `by ${song.artist_name} \u00b7 ${song.genres.join(", ")}`));
      item.addEventListener("mousedown", (event) => { event.preventDefault(); pick(item); });
      list.append(item);
    });
    if (!answer.results.length) {
      const none = element("li", "none", `No song matches \u201c${q}\u201d.`);
      none.setAttribute("aria-disabled", "true");
      list.append(none);
    }
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    active = -1;
  };

  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(suggest, DEBOUNCE_MS); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") { event.preventDefault(); if (list.hidden) suggest(); else highlight(active + 1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); highlight(active - 1); }
    else if (event.key === "Escape") { close(); }
    else if (event.key === "Enter") {
      event.preventDefault();
      const items = [...list.querySelectorAll("[role=option]")];
      if (!list.hidden && items.length) pick(items[Math.max(active, 0)]);
    }
  });
  input.addEventListener("blur", () => setTimeout(close, 100));
}

// ---- try your own song ---------------------------------------------------------------------------
// A song's value that its slider's range cannot hold (a 35-minute track), kept exactly as the song has it until
// the person moves that slider: a range input would clamp it, and the prediction would move by itself.
const exact = {};

function sliderValue(control) {
  return control.name in exact ? exact[control.name] : Number(control.value);
}

function formSong() {
  const song = {};
  for (const control of $("own-form").elements) {
    if (!control.name) continue;
    song[control.name] = control.type === "range" ? sliderValue(control) : control.value;
  }
  return song;
}

function showValue(control) {
  const output = $(`o-${control.name}`);
  if (!output) return;
  const value = sliderValue(control);
  output.textContent = control.name === "duration_ms" ? `${Math.floor(value / 60000)}:${String(Math.round(value / 1000) % 60).padStart(2, "0")}`
    : control.name === "loudness" ? `${value.toFixed(1)} dB`
      : control.name === "tempo" ? `${Math.round(value)} BPM`
        : control.name === "popularity" ? String(Math.round(value)) : value.toFixed(2);
}

let ownAsked = 0;
async function updateOwn() {
  const song = formSong();
  const ticket = ++ownAsked;
  try {
    const [prediction, explanation] = await Promise.all([api("/predict", song), api("/explain", song)]);
    if (ticket !== ownAsked) return;
    showNotice("", "own-error");
    $("own-prediction").textContent = fixed(explanation.prediction);
    $("own-interval").textContent = intervalText(prediction.interval);
    $("own-mood").textContent = prediction.mood || "no mood model loaded";
    $("own-why").textContent = whyText(explanation);
    renderChart($("own-chart"), explanation.contributions);
  } catch (error) {
    showNotice(error.message, "own-error");
  }
}

function setupOwn() {
  const form = $("own-form");
  let timer = null;
  for (const control of form.elements) {
    if (!control.name) continue;
    showValue(control);
    control.addEventListener("input", () => {
      delete exact[control.name];  // moved by the person: the slider's value from now on
      showValue(control);
      clearTimeout(timer);
      timer = setTimeout(updateOwn, DEBOUNCE_MS);
    });
  }
  form.addEventListener("submit", (event) => event.preventDefault());
  $("use-song").addEventListener("click", () => {
    if (!currentSong) return;
    for (const [name, value] of Object.entries(currentSong.features)) {
      const control = form.elements.namedItem(name);
      if (!control) continue;
      if (control.tagName === "SELECT" && ![...control.options].some((o) => o.value === String(value))) {
        control.append(element("option", "", String(value)));  // a genre the model never saw stays the song's
      }
      control.value = String(value);
      delete exact[name];
      if (control.type === "range" && Number(control.value) !== Number(value)) exact[name] = Number(value);
      showValue(control);
    }
    updateOwn();
    form.elements[0].focus();
  });
  updateOwn();
}

// ---- score a file ----------------------------------------------------------------------------------
// The file goes to POST /invocations?format=predict (the file --predict writes, its summary in a header), by
// XMLHttpRequest for its upload progress; the answer is summarised, charted, previewed and offered as a download.
const BINS = 10;  // the histogram's bars: tenths of the valence scale
const PREVIEW_ROWS = 10;
let downloadUrl = null;

const mebibytes = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;
const count = (n, one, many) => `${n.toLocaleString("en")} ${n === 1 ? one : many}`;

// Parse CSV text (RFC 4180: quoted fields may hold commas, quotes doubled, and line ends) into rows of strings.
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  return rows;
}

function scoredName(name) {
  return `${name.replace(/\.csv$/i, "")}.predictions.csv`;  // as --predict names its output
}

function scoreFile(file) {
  const section = $("score");
  const maxBytes = Number(section.dataset.maxBytes);
  showNotice("", "score-error");
  if (file.size > maxBytes) {
    showNotice(`${file.name} is ${mebibytes(file.size)}; a file may hold at most ` +
      `${Number(section.dataset.maxSongs).toLocaleString("en")} songs in ${mebibytes(maxBytes)}: ` +
      "split it and score the parts.", "score-error");
    return;
  }
  const progress = $("score-progress");
  const status = $("score-status");
  $("score-progress-row").hidden = false;
  $("score-result").hidden = true;
  progress.value = 0;
  status.textContent = `Sending ${file.name} (${mebibytes(file.size)})\u2026`;
  const request = new XMLHttpRequest();
  request.open("POST", "/invocations?format=predict");
  request.setRequestHeader("Content-Type", "text/csv");
  request.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    progress.value = event.loaded / Math.max(1, event.total);
    status.textContent = `Sending ${file.name}: ${Math.round(100 * progress.value)} %`;
  });
  request.upload.addEventListener("load", () => {
    progress.removeAttribute("value");  // indeterminate while the server scores
    status.textContent = `Scoring ${file.name}\u2026`;
  });
  request.addEventListener("load", () => {
    $("score-progress-row").hidden = true;
    if (request.status === 200) {
      renderScore(file.name, JSON.parse(request.getResponseHeader("X-Score-Summary")), request.responseText);
      return;
    }
    let reason = `the server answered ${request.status}`;
    try { reason = JSON.parse(request.responseText).message || reason; } catch (error) { /* not JSON */ }
    showNotice(`${file.name} could not be scored: ${sentence(reason)}`, "score-error");
  });
  request.addEventListener("error", () => {
    $("score-progress-row").hidden = true;
    showNotice("The server could not be reached; check that it is running and try again.", "score-error");
  });
  request.send(file);
}

function renderScore(name, summary, text) {
  $("score-result").hidden = false;
  $("score-file-name").textContent = name;
  $("score-scored").textContent = summary.scored.toLocaleString("en");
  $("score-skipped").textContent = summary.skipped.toLocaleString("en");
  $("score-unseen-artists").textContent = (summary.unseen.artist_name || 0).toLocaleString("en");
  $("score-unseen-genres").textContent = (summary.unseen.genre || 0).toLocaleString("en");
  const reasons = $("score-reasons");
  reasons.replaceChildren();
  for (const [reason, n] of Object.entries(summary.reasons)) {
    const item = element("li", "reason", `${count(n, "row", "rows")}: ${reason}`);
    item.dataset.reason = reason;
    item.dataset.count = String(n);
    reasons.append(item);
  }
  for (const { line, reason } of summary.first_skipped) {
    const item = element("li", "line", `line ${line}: ${reason}`);
    item.dataset.line = String(line);
    reasons.append(item);
  }
  if (summary.skipped > summary.first_skipped.length) {
    reasons.append(element("li", "more", `\u2026 and ${count(summary.skipped - summary.first_skipped.length,
      "more row", "more rows")}, each with its reason in the file's reason column`));
  }
  const rows = parseCsv(text);
  const header = rows.shift() || [];
  const column = header.indexOf("predicted_valence");
  const values = column < 0 ? [] : rows.map((row) => row[column]).filter((v) => v !== "" && v !== undefined)
    .map(Number);
  renderHistogram($("score-chart"), values);
  $("score-chart").style.display = column < 0 ? "none" : "";  // a mood-only file has no valence to chart
  renderPreview(header, rows);
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const link = $("score-download");
  link.href = downloadUrl;
  link.download = scoredName(name);
  link.textContent = `Download ${scoredName(name)}`;
}

// One bar per tenth of the scale; each bar's data-count is its songs, and the counts add up to the songs scored.
function renderHistogram(svg, values) {
  const counts = new Array(BINS).fill(0);
  for (const v of values) counts[Math.min(BINS - 1, Math.max(0, Math.floor(v * BINS)))] += 1;
  const width = 400;
  const height = 160;
  const top = 16;
  const bottom = 20;
  const step = width / BINS;
  const most = Math.max(1, ...counts);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const make = (tag, attributes, text) => {
    const node = document.createElementNS(svg.namespaceURI, tag);  // SVG's, from the element
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  counts.forEach((n, i) => {
    const barHeight = ((height - top - bottom) * n) / most;
    const bar = make("rect", { class: "bin", x: i * step + 2, y: height - bottom - barHeight, width: step - 4,
      height: barHeight, "data-count": n, "data-from": (i / BINS).toFixed(1) });
    const title = document.createElementNS(svg.namespaceURI, "title");
    title.textContent = `${count(n, "song", "songs")} from ${(i / BINS).toFixed(1)} to ${((i + 1) / BINS).toFixed(1)}`;
    bar.append(title);
    if (n) make("text", { class: "count", x: i * step + step / 2, y: height - bottom - barHeight - 4 }, String(n));
  });
  make("line", { class: "axis", x1: 0, y1: height - bottom, x2: width, y2: height - bottom });
  for (const [x, label, anchor] of [[0, "0 sad", "start"], [width / 2, "0.5", "middle"], [width, "1 happy", "end"]]) {
    make("text", { class: "tick", x, y: height - 4, "text-anchor": anchor }, label);
  }
}

function renderPreview(header, rows) {
  const table = $("score-preview");
  const head = element("tr");
  for (const name of header) {
    const cell = element("th", "", name);
    cell.setAttribute("scope", "col");
    head.append(cell);
  }
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const row of rows.slice(0, PREVIEW_ROWS)) {
    const line = element("tr");
    for (const value of row) line.append(element("td", "", value));
    body.append(line);
  }
  $("score-preview-caption").textContent = rows.length > PREVIEW_ROWS
    ? `The first ${PREVIEW_ROWS} of ${count(rows.length, "row", "rows")} of the scored file`
    : `The scored file's ${count(rows.length, "row", "rows")}`;
}

function setupScore() {
  const input = $("score-file");
  const zone = $("score-drop");
  input.addEventListener("change", () => { if (input.files.length) scoreFile(input.files[0]); input.value = ""; });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) scoreFile(files[0]);
  });
}

// ---- the model panel -----------------------------------------------------------------------------
async function loadModel() {
  let meta;
  try {
    meta = await api("/model");
  } catch (error) {
    showNotice(error.message);
    return;
  }
  const body = $("model-table").tBodies[0];
  body.replaceChildren();
  const rows = [];
  const regression = meta.regression && meta.regression.metrics;
  if (regression) {
    rows.push(["valence MAE (lower is better)", regression.test_mae, regression.baseline_mae]);
    rows.push(["valence RMSE (lower is better)", regression.test_rmse, regression.baseline_rmse]);
    rows.push(["valence R\u00b2 (higher is better)", regression.test_r2, regression.baseline_r2]);
  }
  const classification = meta.classification && meta.classification.metrics;
  if (classification) {
    rows.push(["mood accuracy", classification.test_accuracy, classification.baseline_accuracy]);
    rows.push(["mood macro-F1", classification.test_macro_f1, classification.baseline_macro_f1]);
  }
  for (const [name, model, baseline] of rows) {
    const row = element("tr");
    row.append(element("th", "", name));
    row.lastChild.setAttribute("scope", "row");
    row.append(element("td", "", typeof model === "number" ? fixed(model) : "\u2013"));
    row.append(element("td", "", typeof baseline === "number" ? fixed(baseline) : "\u2013"));
    body.append(row);
  }
  $("model-summary").textContent = modelSummary(meta.regression || meta.classification || {});
}

// "Trained on 2026-12-06 with 19,828 rows of spotify_features.csv.", from the fields a bundle has (each part
// left out when its field is), then what the baselines are: each row's baseline comes from the other folds.
function modelSummary(bundle) {
  const date = (bundle.created_at || "").slice(0, 10);
  const data = bundle.data || {};
  const rows = typeof data.rows === "number" ? `${data.rows.toLocaleString("en")} ${data.rows === 1 ? "row" : "rows"}` : "";
  const parts = [date && `on ${date}`, rows && `with ${rows}`, data.path && `${rows ? "of" : "on"} ${data.path}`];
  const trained = parts.filter(Boolean).join(" ");
  return (trained ? `Trained ${trained}. ` : "") +
    "Baselines: for valence the mean of the other folds' valence, for the mood their most frequent mood " +
    "(each song is tested by the fold model that never saw it).";
}

// ---- start ---------------------------------------------------------------------------------------
function start() {
  if (document.body.dataset.ready !== "true") return;  // the notice says why; there is nothing to ask the API
  setupOwn();
  setupScore();
  loadModel();
  if (document.body.dataset.catalog === "true") {
    setupSearch();
    const params = new URLSearchParams(location.search);
    const wanted = {};
    for (const name of ["track_id", "artist_name", "track_name"]) {
      if (params.has(name)) wanted[name] = params.get(name);
    }
    if (Object.keys(wanted).length) loadSong(wanted);
  }
}

document.addEventListener("DOMContentLoaded", start);
