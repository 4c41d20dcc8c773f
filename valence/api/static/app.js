// The page: search with suggestions, a song card with its explanation, "try your own song", the model panel.
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

function renderSong(prediction, explanation) {
  currentSong = explanation;
  $("song").hidden = false;
  $("song-title").textContent = `${prediction.track_name || "(untitled)"} \u2014 ${prediction.artist_name}`;
  $("song-genres").textContent = `Genres: ${prediction.genres.join(", ")}`;
  $("song-prediction").textContent = fixed(prediction.prediction);
  const hasActual = typeof prediction.expected === "number";
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
