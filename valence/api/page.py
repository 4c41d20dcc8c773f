"""The web page for people at `/`: a Jinja template and plain CSS and JavaScript from the package."""
from dataclasses import dataclass

from flask import Blueprint, render_template

from valence import config
from valence.api.context import service
from valence.api.schemas import MAX_CSV_BYTES, MAX_CSV_SONGS

# The page's scripts, styles and API calls come from this origin only; the icon is a data: URL.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

bp = Blueprint("page", __name__, static_folder="static", static_url_path="/static", template_folder="templates")


@dataclass
class Slider:
    """A range input of the "try your own song" form."""

    name: str
    label: str
    min: float
    max: float
    value: float = 0.0


# Ranges a person would move through (narrower than what the API accepts, config.NUMERIC_RANGES).
SLIDERS = (
    Slider("popularity", "Popularity", 0, 100),
    Slider("acousticness", "Acousticness", 0, 1),
    Slider("danceability", "Danceability", 0, 1),
    Slider("duration_ms", "Duration", 30_000, 600_000),
    Slider("energy", "Energy", 0, 1),
    Slider("instrumentalness", "Instrumentalness", 0, 1),
    Slider("liveness", "Liveness", 0, 1),
    Slider("loudness", "Loudness", -40, 0),
    Slider("speechiness", "Speechiness", 0, 1),
    Slider("tempo", "Tempo", 40, 220),
)
assert tuple(s.name for s in SLIDERS) == config.NUMERIC_FEATURES


def _form(explainer):
    """Return the sliders and selects, set to the background song (the typical training song)."""
    song = explainer.background if explainer is not None else {}
    sliders = []
    for slider in SLIDERS:
        # Exactly the background's value (the range stretched to hold it), so that its contribution is 0.
        value = float(song.get(slider.name, (slider.min + slider.max) / 2))
        sliders.append(Slider(slider.name, slider.label, min(slider.min, value), max(slider.max, value), value))
    genres = sorted(explainer.encoder.vocab_["genre"]) if explainer is not None else []
    options = {"genre": genres, "key": list(config.KEYS), "mode": list(config.MODES),
               "time_signature": list(config.TIME_SIGNATURES)}
    labels = {"genre": "Genre", "key": "Key", "mode": "Mode", "time_signature": "Time signature"}
    selects = [{"name": name, "label": labels[name], "options": options[name], "value": song.get(name)}
               for name in config.CATEGORICAL_FEATURES]
    return sliders, selects


def _train_hint(state, kind):
    """Return the app's training command (it names the served --model-dir, or the setting whose value to pass)
    for the model kinds the page needs, as a sentence."""
    hint = state.train_hint.replace(f"{COMMAND} ", f"{COMMAND} --model {kind} ", 1)
    return hint[:1].upper() + hint[1:] + ("" if hint.endswith(".") else ".")


COMMAND = "musical_valence_predictor.py"


@bp.get("/")
def index():
    """Serve the page; without a model it says why and how to train one."""
    state = service()
    explainer = state.explainer  # None without a regression model
    ready = explainer is not None
    sliders, selects = _form(explainer)
    problem = None
    if state.predictor is None:
        problem = (f"No model is loaded, so nothing can be predicted yet ({state.model_error}). "
                   f"{_train_hint(state, 'both')}")
    elif not ready:
        problem = ("No regression model is loaded (regression.safetensors is not in the model folder), and this page "
                   "shows predicted valence and its reasons; the API still answers moods. "
                   f"{_train_hint(state, 'regression')}")
    html = render_template("index.html", ready=ready, catalog_ready=ready and state.catalog is not None,
                           problem=problem, sliders=sliders, selects=selects, max_csv_songs=MAX_CSV_SONGS,
                           max_csv_bytes=MAX_CSV_BYTES, max_csv_mib=MAX_CSV_BYTES // 2**20)
    return html, 200, {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": PAGE_CSP}
