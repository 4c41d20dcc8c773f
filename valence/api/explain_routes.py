"""The explanation and search routes of the JSON API: GET and POST /explain, GET /search."""
import pandas as pd
from flask import Blueprint, request

from valence import config
from valence.api import observability
from valence.api.bodies import json_songs, song_levels
from valence.api.context import ApiError, service
from valence.api.lookup import query_level, track_answer
from valence.api.schemas import MAX_EXPLAIN_SONGS, MAX_QUERY_BYTES, MAX_QUERY_TEXT, songs_to_columns, text_error
from valence.model.predictor import unknown_category_warnings

bp = Blueprint("explain", __name__)


NO_REGRESSION = ("no regression model is loaded (regression.safetensors is not in the model folder, which serves "
                 "moods only): explanations are of the predicted valence; {train_hint}")


def explainer():
    """Return the loaded Explainer, or raise the 503 of a missing model or of one with moods only."""
    state = service()
    state.require_predictor()
    if state.explainer is None:
        raise ApiError(503, NO_REGRESSION.format(train_hint=state.train_hint))
    return state.explainer


@bp.get("/explain")
def explain_track():
    """Answer why a catalog track (found as GET /predict finds it) gets its prediction."""
    track = track_answer(query_level())
    explaining = explainer()
    # The listings hold the features; the version marker is read off the track's name, as when it was scored
    # (a track whose listings carry different names was scored with each: docs/api.md says so).
    rows = service().require_catalog().song_rows(track["track_id"]).assign(track_name=track["track_name"])
    if track["expected"] is not None:  # a track the model learned from is explained as it was scored: honestly
        rows = rows.assign(valence=track["expected"], track_id=track["track_id"])
    explanation = explaining.explain(rows, honest=True)
    # A track listed under several genres is predicted as the mean of its listings, and Shapley
    # values are linear in the prediction: its contributions are the mean of theirs.
    answer = {key: track[key] for key in ("track_id", "artist_name", "track_name", "genres")}
    answer["prediction"] = float(explanation.prediction.mean())
    answer["interval"] = track["interval"]
    answer["base_value"] = (explanation.base_value if explanation.base_values is None
                            else float(explanation.base_values.mean()))
    answer["contributions"] = dict(zip(explanation.groups, explanation.contributions.mean(axis=0).tolist()))
    first = rows.iloc[0]
    answer["features"] = {name: (str(first[name]) if name in config.CATEGORICAL_FEATURES else float(first[name]))
                          for name in config.FEATURE_COLUMNS}
    answer["warnings"] = track["warnings"]
    if "other_matches" in track:
        answer["other_matches"] = track["other_matches"]
    return answer


@bp.post("/explain")
def explain_features():
    """Answer why one song, or each of a list of songs, given by their features gets its prediction."""
    default = query_level()
    songs, is_list = json_songs(MAX_EXPLAIN_SONGS)
    explaining = explainer()
    frame = pd.DataFrame(songs_to_columns(songs))
    explanation = explaining.explain(frame, song_levels(songs, default))
    observability.note_songs(len(songs))
    answers = []
    for i, row_warnings in enumerate(unknown_category_warnings(explaining.encoder, frame)):
        answer = explanation.row(i)
        answer["warnings"] = list(row_warnings)
        answers.append(answer)
    return {"explanations": answers} if is_list else answers[0]


@bp.get("/search")
def search():
    """Answer the catalog songs whose artist or track name starts with (or holds) the text typed so far."""
    if len(request.query_string) > MAX_QUERY_BYTES:
        raise ApiError(414, f"query string is longer than {MAX_QUERY_BYTES:,} bytes")
    query = request.args.get("q")
    if query is None:
        raise ApiError(400, "missing query parameter q (the text typed so far)", missing=["q"])
    if len(query) > MAX_QUERY_TEXT:
        raise ApiError(400, f"query parameter q is longer than {MAX_QUERY_TEXT} characters")
    problem = text_error(query)
    if problem:
        raise ApiError(400, f"query parameter q {problem}")
    return {"query": query, "results": service().require_catalog().search(query)}
