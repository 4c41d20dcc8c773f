"""Request and response bodies as pydantic models: the one source of validation and of the OpenAPI schemas."""
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from valence.data import cells
from valence import config
from valence.api.strict_json import MAX_ECHO, BodyError

MAX_SONGS = 1000
MAX_EXPLAIN_SONGS = 100  # a list of 100 takes about half a second of a worker (bench/explain_speed.py)
# Longest text a field or a lookup parameter may hold: far above any name in the
# Kaggle file (its longest track name has 208 characters), so a catalog row can
# always be sent back as it is.
MAX_TEXT = 1000
MAX_QUERY_TEXT = MAX_TEXT
# Longest raw query string: gunicorn refuses request lines over 8,190 bytes
# before the app sees them; two 1,000-character names fit unless mostly non-ASCII.
MAX_QUERY_BYTES = 8000
MAX_ERRORS = 100  # a 1,000-row body of junk should not answer with 15,000 messages
# Text may not hold control characters (NUL and the like; tab and newline count
# as spaces); lone UTF-16 surrogates, which no UTF-8 text can hold, fail as
# strings. The patterns are valid in Rust (pydantic), Python and JavaScript alike.
CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
TEXT_PATTERN = rf"^[^{CONTROL}]*$"
GENRE_PATTERN = rf"^[^{CONTROL}]*[^\s{CONTROL}][^{CONTROL}]*$"  # the same, and not blank
BAD_CHARACTER = re.compile(rf"[{CONTROL}\ud800-\udfff]")
BAD_TEXT = "must not contain control characters (such as NUL) or lone surrogates"
NO_SURROGATES = "; no control characters (pattern) and no lone surrogates (\\ud800 without its pair)"

# Key, mode and time signature are read as the CSV reader reads a cell (cells.parse_cell), then
# answered in the Kaggle spelling: "c#", " Db ", "1" and 1 are all C#; 4 and "4" are 4/4.
SPELLINGS = {"key": (cells.KEY_PATTERN, "flats such as Db, and Spotify's numbers 0 (C) to 11 (B), as integers "
                                        "or text (-1, Spotify's 'no key detected', cannot be predicted)"),
             "mode": (cells.MODE_PATTERN, "Spotify's numbers 1 (Major) and 0 (Minor), as integers or text"),
             "time_signature": (cells.TIME_SIGNATURE_PATTERN, "N/4 up to 7/4, and Spotify's beat counts 0 to 7 "
                                                              "as integers or text; values the model never saw "
                                                              "are predicted with a warning")}
# JSON Schema counts 4.0 as an integer (the document says "integer"), as the CSV reader reads the text "4.0".
WHOLE = BeforeValidator(lambda value: int(value) if type(value) is float and value.is_integer() else value)
Probability = Annotated[float, Field(ge=0, le=1)]
Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=TEXT_PATTERN)]
Mood = Literal[config.CLASS_NAMES]
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _song_fields():
    """Return the Song model's fields and the one message each gives when its value is bad."""
    fields, messages = {}, {}
    genre = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=GENRE_PATTERN, description=(
        "a genre of the training data; others are predicted with a warning; not blank" + NO_SURROGATES))]
    choices = {"key": config.KEYS, "mode": config.MODES, "time_signature": config.TIME_SIGNATURES}
    for name in config.FEATURE_COLUMNS:
        if name == "genre":
            fields[name], messages[name] = genre, f"must be a non-empty string of at most {MAX_TEXT} characters"
        elif name in SPELLINGS:  # read as a CSV cell is: one set of spelling rules (cells.py)
            pattern, also = SPELLINGS[name]
            low, high = cells.NUMBER_RANGES[name]
            number = Annotated[int, Field(ge=low, le=high), WHOLE]
            fields[name] = Annotated[Annotated[str, Field(pattern=pattern)] | number,
                                     Field(examples=list(choices[name]), description=(
                                         f"one of {', '.join(choices[name])}, in any case; also {also}"))]
            messages[name] = f"must be one of {', '.join(choices[name])} (any case; also {also})"
        else:
            low, high = config.NUMERIC_RANGES[name]
            fields[name] = Annotated[float, Field(ge=low, le=high)]
            messages[name] = f"must be a number from {low:g} to {high:g}"
    # Kaggle columns a client may send along with the features (a catalog row
    # pasted back): accepted and checked; artist_name and track_name are used.
    uses = {"artist_name": "passed to the model (the artist's history)",
            "track_name": "passed to the model, which reads its version marker (remix, live, acoustic, ...) and "
                          "finds the artist's other releases of the same title",
            "track_id": "accepted and ignored"}
    for name, use in uses.items():
        fields[name] = Annotated[Text, Field(description=f"optional; {use}{NO_SURROGATES}")]
        messages[name] = f"must be a string of at most {MAX_TEXT} characters"
    fields["valence"] = Annotated[Probability, Field(description="optional; accepted and ignored")]
    messages["valence"] = "must be a number from 0 to 1"
    return {name: (kind, ... if name in config.FEATURE_COLUMNS else None) for name, kind in fields.items()}, messages


SONG_FIELDS, FIELD_MESSAGES = _song_fields()
OPTIONAL_FIELDS = tuple(name for name in SONG_FIELDS if name not in config.FEATURE_COLUMNS)
# Booleans are not numbers, strings are not numbers, NaN and infinity are refused.
Level = Annotated[float, Field(gt=0, lt=1, description="optional; the share of songs like this one whose valence "
                                                       "the interval holds (default: the query's ?level=, else 0.9)")]
FIELD_MESSAGES["level"] = "must be a number between 0 and 1 (exclusive), such as 0.9"
Song = create_model("Song", __config__=STRICT, __doc__="One song's features, as POST /predict takes them.",
                    **SONG_FIELDS, level=(Level, None))
SongList = Annotated[list[Song], Field(min_length=1, max_length=MAX_SONGS)]
SongBody = Song | SongList
ExplainBody = Song | Annotated[list[Song], Field(min_length=1, max_length=MAX_EXPLAIN_SONGS)]
_SONGS = TypeAdapter(list[Song])


class MoodProbabilities(BaseModel):
    """Probability of each mood class."""

    model_config = STRICT
    sad: Probability
    neutral: Probability
    happy: Probability


class Interval(BaseModel):
    """The range that holds the song's valence with probability `level` (conformal prediction on the training
    run's out-of-fold errors: wider for an unseen artist, a rare genre, a song unlike the training data)."""

    model_config = STRICT
    level: Annotated[float, Field(gt=0, lt=1)]
    low: Probability
    high: Probability


class SongPrediction(BaseModel):
    """The answer for one song; mood only with a classification model."""

    model_config = STRICT
    prediction: Annotated[Probability | None, Field(description="the predicted valence; null without a "
                                                                "regression model (a folder of moods only)")]
    interval: Annotated[Interval, Field(description="the valence's interval; absent without a regression "
                                                    "model")] = None
    mood: Mood = None
    mood_probabilities: MoodProbabilities = None
    warnings: list[str]


class PredictionList(BaseModel):
    """The answers for a list of songs, in order."""

    model_config = STRICT
    predictions: list[SongPrediction]


class TrackBrief(BaseModel):
    """A catalog track named in a list."""

    model_config = STRICT
    track_id: str
    artist_name: str
    track_name: str
    genres: list[str]


class Track(TrackBrief):
    """A catalog track and its prediction."""

    popularity: float
    expected: Annotated[Probability | None, Field(description="the track's valence in the catalog's data file; "
                                                             "null when that file has no valence column")]
    prediction: Annotated[Probability | None, Field(description=(
        "mean of the per-genre predictions; null without a regression model. A track the model learned from "
        "(one with an expected valence in its training file) is predicted by the fold model that never saw it, "
        "on artist statistics without its own valence: an honest prediction, as good as a new song's"))]
    interval: Annotated[Interval, Field(description="the prediction's interval; absent without a regression "
                                                    "model")] = None
    genre_predictions: dict[str, Probability | None]
    warnings: list[str]
    mood: Mood = None
    mood_probabilities: MoodProbabilities = None
    other_matches: Annotated[list[TrackBrief], Field(
        description="other tracks with the same names (lookups by name only)")] = None


Contributions = create_model(
    "Contributions", __config__=STRICT,
    __doc__="Each feature group's contribution to the prediction, in valence units; with base_value they add up "
            "to the prediction. version is the version marker read off track_name (remix, acoustic, live, ...; 0 "
            "without one); artist is the artist's history (all artist statistics).",
    **{group: (float, ...) for group in config.EXPLANATION_GROUPS})


class SongExplanation(BaseModel):
    """Why a song gets its prediction: Shapley values of the feature groups against the background song."""

    model_config = STRICT
    prediction: Probability
    interval: Interval
    base_value: Annotated[Probability, Field(description="the prediction for the background: the training "
                                                         "split's typical song, by an unknown artist")]
    contributions: Contributions
    warnings: list[str]


class ExplanationList(BaseModel):
    """The explanations of a list of songs, in order."""

    model_config = STRICT
    explanations: list[SongExplanation]


class TrackExplanation(TrackBrief):
    """Why a catalog track gets its prediction; a track under several genres: the mean of its listings'."""

    prediction: Annotated[Probability, Field(description="mean of the per-genre predictions")]
    interval: Interval
    base_value: Probability
    contributions: Contributions
    features: Annotated[Song, Field(description="the track's features (its first genre's listing)")]
    warnings: list[str]
    other_matches: Annotated[list[TrackBrief], Field(
        description="other tracks with the same names (lookups by name only)")] = None


class SearchResults(BaseModel):
    """Catalog songs for a partly typed artist or track name, best first."""

    model_config = STRICT
    query: str
    results: list[TrackBrief]


class ModelState(BaseModel):
    """Whether the model is loaded, and its version."""

    model_config = STRICT
    loaded: bool
    regression: Annotated[bool, Field(description="predicted valence and explanations need it")]
    classification: bool
    version: Annotated[str | None, Field(description="short sha256 of the bundle files; every answer's "
                                                     "X-Model-Version header")]
    error: str | None


class CatalogState(BaseModel):
    """Whether the catalog is loaded, its size, and the model it was scored with (always the one served)."""

    model_config = STRICT
    loaded: bool
    backend: Literal["sqlite", "postgresql"]
    tracks: Annotated[int, Field(ge=0)]
    rows: Annotated[int, Field(ge=0)]
    model_version: str | None
    built_at: str | None
    error: str | None


class Health(BaseModel):
    """Liveness and what is loaded."""

    model_config = STRICT
    status: Literal["ok", "degraded"]
    model: ModelState
    catalog: CatalogState
    notes: Annotated[list[str], Field(description="what an operator should know: newer files waiting for "
                                                  "their match, settings no longer used")]


class ModelMetadata(BaseModel):
    """Per bundle: kind, created_at, data, split, metrics, train_config, model_args, versions, features."""

    model_config = STRICT
    regression: dict[str, Any] = None
    classification: dict[str, Any] = None


class FieldError(BaseModel):
    """One bad field of a POST body."""

    model_config = STRICT
    index: Annotated[int | None, Field(description="null for a single object")]
    field: str | None
    message: str


class Error(BaseModel):
    """Every answer other than 200."""

    model_config = STRICT
    status: int
    error: str
    message: str
    errors: list[FieldError] = None
    missing: list[str] = None
    suggestions: list[TrackBrief] = None


RESPONSE_MODELS = (SongPrediction, PredictionList, TrackBrief, Track, SongExplanation, ExplanationList,
                   TrackExplanation, SearchResults, Health, ModelMetadata, Error)


def text_error(value):
    """Return why a string is not acceptable text (control characters, lone surrogates), or None."""
    return BAD_TEXT if BAD_CHARACTER.search(value) else None


def _field_error(error, index):
    """Turn one pydantic error into {index, field, message}."""
    location, kind = error["loc"], error["type"]
    if len(location) == 1:  # the song itself: not an object, or a key that is no text
        if kind == "string_unicode":
            return {"index": index, "field": error["input"][:MAX_ECHO], "message": "is not a known field"}
        return {"index": index, "field": None, "message": "must be a JSON object of features"}
    name = str(location[1])
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message, name = "is not a known field", name[:MAX_ECHO]
    elif kind == "string_unicode" or (kind == "string_pattern_mismatch" and name not in SPELLINGS
                                      and error["input"].strip()):
        message = BAD_TEXT
    else:
        message = FIELD_MESSAGES[name]
    return {"index": index, "field": name, "message": message}


def validate_songs(body, max_songs=MAX_SONGS):
    """Return (songs, is_list) for a valid body; raise BodyError listing every bad field."""
    is_list = isinstance(body, list)
    if not isinstance(body, (list, dict)):
        raise BodyError("body must be a JSON object of features or a list of them")
    songs = body if is_list else [body]
    if not 1 <= len(songs) <= max_songs:
        raise BodyError(f"a list must hold 1 to {max_songs} songs, not {len(songs)}")
    try:
        return _SONGS.validate_python(songs), is_list
    except ValidationError as failure:
        found = failure.errors(include_url=False, include_context=False)
    errors = []
    for error in found:
        entry = _field_error(error, error["loc"][0] if is_list else None)
        if not errors or errors[-1] != entry:  # one entry per field
            errors.append(entry)
    shown = errors[:MAX_ERRORS]
    more = f" (first {MAX_ERRORS} shown)" if len(errors) > MAX_ERRORS else ""
    raise BodyError(f"{len(errors)} invalid field(s){more}; nothing was predicted", shown)


def songs_to_columns(songs):
    """Turn validated songs into the column lists a Predictor frame is built from."""
    columns = {name: [getattr(song, name) for song in songs] for name in config.FEATURE_COLUMNS}
    for name in config.NUMERIC_FEATURES:  # as arrays: pandas would inspect every value of a list (3 ms a 1,000 songs)
        columns[name] = np.array(columns[name], dtype=np.float64)
    columns["genre"] = [genre.strip() for genre in columns["genre"]]
    for name in SPELLINGS:
        columns[name] = [cells.parse_cell(name, value)[0] for value in columns[name]]
    for name in ("artist_name", "track_name"):  # the artist's history; the title's version marker
        given = [getattr(song, name) for song in songs]
        if any(value is not None for value in given):
            columns[name] = ["" if value is None else value for value in given]
    return columns


# POST /invocations, MLflow's scoring protocol: the request shapes of MLflow's scoring server, and its answer.
MAX_CSV_SONGS = 100_000  # songs in one text/csv body of POST /invocations
MAX_CSV_BYTES = 64 * 1024 * 1024  # its bytes: 100,000 Kaggle rows take about 14 MB, so names may be long
Params = Annotated[dict[str, Any], Field(description="accepted and ignored: the model takes no parameters (MLflow "
                                                     "ignores them for a model without a params schema)")]
# A frame (what MLflow's clients send) has every column for every row: an optional field of a song that lacks
# it is null there (pandas' NaN), so these bodies take null for it, as if it were left out.
FrameSong = create_model("FrameSong", __config__=STRICT, __doc__="One song as a row of a frame: Song, and null for "
                                                                 "an optional field means it is left out.",
                         **{name: (kind | None, default) if name in OPTIONAL_FIELDS else (kind, default)
                            for name, (kind, default) in SONG_FIELDS.items()})
FrameSongList = Annotated[list[FrameSong], Field(min_length=1, max_length=MAX_SONGS)]
Columns = Annotated[dict[str, Annotated[list[Any], Field(min_length=1, max_length=MAX_SONGS)]], Field(
    description="columnar: each field's values, one per song, every list as long")]


class DataframeSplit(BaseModel):
    """A frame as pandas' DataFrame.to_dict(orient="split") writes it; each row is a song of the named fields."""

    model_config = STRICT
    columns: list[str]
    data: Annotated[list[list[Any]], Field(min_length=1, max_length=MAX_SONGS)]
    index: Annotated[list[Any], Field(description="accepted and ignored; as long as data")] = None


class SplitInvocation(BaseModel):
    """MLflow's dataframe_split body."""

    model_config = STRICT
    dataframe_split: DataframeSplit
    params: Params = None


class RecordsInvocation(BaseModel):
    """MLflow's dataframe_records body: a list of songs."""

    model_config = STRICT
    dataframe_records: FrameSongList
    params: Params = None


class InstancesInvocation(BaseModel):
    """MLflow's (and TF Serving's) instances body: a list of songs, or each field's values."""

    model_config = STRICT
    instances: FrameSongList | Columns
    params: Params = None


class InputsInvocation(BaseModel):
    """MLflow's (and TF Serving's) inputs body: as instances."""

    model_config = STRICT
    inputs: FrameSongList | Columns
    params: Params = None


InvocationBody = SplitInvocation | RecordsInvocation | InstancesInvocation | InputsInvocation


class InvocationPrediction(BaseModel):
    """One song's answer: the columns of ValenceModel.predict; valence with a regression model, mood and its
    probabilities with a classification model."""

    model_config = STRICT
    valence: Probability | None = None
    valence_low: Annotated[Probability | None, Field(description="the valence's 90 % interval (conformal)")] = None
    valence_high: Probability | None = None
    mood: Mood | None = None
    p_sad: Probability | None = None
    p_neutral: Probability | None = None
    p_happy: Probability | None = None
    warnings: list[str]
    reason: Annotated[str, Field(description="why a row of a CSV body could not be scored (its line, then the "
                                             "reason --predict gives); empty when it was")]


class Invocations(BaseModel):
    """MLflow's answer: one prediction per song, in order."""

    model_config = STRICT
    predictions: list[InvocationPrediction]


# The Open Inference Protocol (KServe V2) REST shapes: input tensors in, output tensors out, {"error": ...} errors.
Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                   "FP64", "BYTES"]
Scalar = float | str | bool | None


class TensorMetadata(BaseModel):
    """An input or output tensor of the model: its name, datatype and shape (-1: one per song)."""

    model_config = STRICT
    name: str
    datatype: Datatype
    shape: list[int]


class V2ModelMetadata(BaseModel):
    """The protocol's model metadata: one input tensor per field of a song, one output tensor per answer column."""

    model_config = STRICT
    name: str
    versions: Annotated[list[str | None], Field(description="the served model's version (X-Model-Version)")]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InferInput(BaseModel):
    """One input tensor: one value per song, of shape [n] or [n, 1]."""

    model_config = STRICT
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    parameters: Annotated[dict[str, Any], Field(description="accepted and ignored")] = None
    data: Annotated[list[Scalar | list[Scalar]], Field(description="the values in row-major order (flat, or rows "
                                                                    "of one value); null in artist_name or "
                                                                    "track_name: that song lacks it")]


class RequestedOutput(BaseModel):
    """An output the client asks for; without outputs every output is answered."""

    model_config = STRICT
    name: str
    parameters: Annotated[dict[str, Any], Field(description="accepted and ignored")] = None


class InferRequest(BaseModel):
    """The protocol's inference request: named input tensors, one per feature column."""

    model_config = STRICT
    id: Annotated[str, Field(description="echoed in the answer")] = None
    parameters: Annotated[dict[str, Any], Field(description="accepted and ignored")] = None
    inputs: Annotated[list[InferInput], Field(min_length=1)]
    outputs: list[RequestedOutput] = None


class InferOutput(BaseModel):
    """One output tensor: one value per song, in order."""

    model_config = STRICT
    name: str
    shape: list[int]
    datatype: Datatype
    data: list[float | str]


class InferResponse(BaseModel):
    """The protocol's inference answer: the model, the request's id, and the output tensors."""

    model_config = STRICT
    model_name: str
    model_version: str | None
    id: str = None
    outputs: list[InferOutput]


class ProtocolError(BaseModel):
    """The protocol's error: a message alone."""

    model_config = STRICT
    error: str


class ServerLive(BaseModel):
    """The server answers."""

    model_config = STRICT
    live: bool


class ServerReady(BaseModel):
    """The server has a model and a catalog loaded."""

    model_config = STRICT
    ready: bool


class ModelReady(BaseModel):
    """The model is loaded."""

    model_config = STRICT
    name: str
    ready: bool
