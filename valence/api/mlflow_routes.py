"""POST /invocations: MLflow's scoring protocol, so MLflow's clients and scripts call the API unchanged.

JSON bodies take MLflow's shapes (dataframe_split, dataframe_records, instances, inputs) and their songs are
checked as POST /predict checks them; a text/csv body is streamed to a temporary file and read in chunks as
--predict reads a CSV, bad rows answered by line. The answer is MLflow's {"predictions": [...]} (the columns of
ValenceModel.predict, one per song in order), or CSV when the client accepts text/csv and not JSON.

With ?format=predict a text/csv body is answered with the file --predict writes (predict_file.score_csv, its
columns and rows) and a summary in the X-Score-Summary header: rows scored, rows skipped and why, songs of values
the model never saw. MLflow's clients never send the option, so they never see the difference; the page's
"Score a file" uses it.
"""
import csv
import io
import json
import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from flask import Blueprint, current_app, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from valence.api import observability
from valence.api.bodies import request_body
from valence.api.context import ApiError, service
from valence.api.schemas import (MAX_CSV_BYTES, MAX_CSV_SONGS, MAX_SONGS, OPTIONAL_FIELDS, songs_to_columns,
                                 validate_songs)
from valence.api.strict_json import BodyError, parse_json
from valence.config import ValenceError

bp = Blueprint("mlflow", __name__)

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
BODY_NAME = "the CSV body"  # how messages name the body (never the temporary file)
READ_BYTES = 1024 * 1024  # the CSV body is copied to its temporary file this many bytes at a time
FORMATS = ("mlflow", "predict")  # ?format=: MLflow's answer (the default), or the file --predict writes
SUMMARY_HEADER = "X-Score-Summary"  # the summary of a ?format=predict answer, as JSON in ASCII
SKIPPED_SHOWN = 10  # skipped rows named by line in the summary (all of them are in the file, with their reason)


@bp.post("/invocations")
def invocations():
    """Predict songs sent as MLflow's scoring server takes them: JSON (MLflow's shapes) or text/csv."""
    if request.content_encoding not in (None, "", "identity"):
        raise ApiError(415, "Content-Encoding is not supported: send the body uncompressed")
    predictor = service().require_predictor()
    as_csv = wants_csv()
    layout = answer_format()
    if layout == "predict" and request.mimetype != "text/csv":
        raise ApiError(415, "format=predict answers the file --predict writes: send the songs as Content-Type: "
                            "text/csv (a header row and one song per line)")
    if request.mimetype == "application/json":
        songs = json_body_songs()
        result = predictor.predict(pd.DataFrame(songs_to_columns(songs)))
        observability.note_songs(len(songs))
        return answer([encode(prediction_records(predictor, result, len(songs)), as_csv, predictor)], as_csv,
                      predictor)
    if request.mimetype == "text/csv":
        with tempfile.TemporaryDirectory(prefix="valence-invocations-") as folder:
            path = Path(folder) / "body.csv"
            copy_body(path)
            if layout == "predict":
                return predict_file_answer(path, predictor)
            chunks, scored = score_csv_body(path, predictor, as_csv)
        observability.note_songs(scored)
        return answer(chunks, as_csv, predictor)
    raise ApiError(415, "send the songs as Content-Type: application/json (MLflow's dataframe_split, "
                        "dataframe_records or instances) or text/csv (a header row and one song per line)")


def wants_csv():
    """Return whether the client asks for CSV (Accept: text/csv) rather than JSON, MLflow's answer."""
    accept = request.accept_mimetypes
    return accept.best_match(("application/json", "text/csv")) == "text/csv"


def answer_format():
    """Return the answer's format the query asks for (?format=mlflow or predict; MLflow's by default)."""
    layout = request.args.get("format", "mlflow")
    if layout not in FORMATS:
        raise ApiError(400, f"format must be mlflow (MLflow's answer, the default) or predict (the file --predict "
                            f"writes, for a text/csv body), not {layout[:50]!r}")
    return layout


def predict_file_answer(path, predictor):
    """Answer a CSV body with the file --predict writes of it, its summary in the X-Score-Summary header.

    The scored file is written beside the body in the request's temporary folder and sent from an open handle,
    so it streams to the client after the folder is removed and is never held whole.
    """
    from valence.model.predict_file import score_csv  # imported when a CSV body comes, as score_csv_body's
    output = path.with_name("scored.csv")
    counted = CountedPredictor(predictor)
    try:
        summary = score_csv(path, output, counted)
    except ValenceError as error:
        raise ApiError(400, str(error).replace(str(path), BODY_NAME)) from None
    rows = summary.scored + len(summary.bad_rows)
    if rows > MAX_CSV_SONGS:
        raise too_many_songs()
    observability.note_songs(summary.scored)
    response = send_file(open(output, "rb"), mimetype="text/csv", max_age=0, etag=False, conditional=False)
    response.headers[SUMMARY_HEADER] = json.dumps(score_summary(summary), separators=(",", ":"))
    return response


class CountedPredictor:
    """A Predictor that refuses a body once the songs it has been given pass MAX_CSV_SONGS (413), so that an
    oversized body stops within a chunk; the rows that cannot be scored are counted after the file is read."""

    def __init__(self, predictor):
        self.predictor, self.songs = predictor, 0

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def predict(self, frame, *args, **kwargs):
        """Predict the frame's songs, as the wrapped Predictor does, once they are within the limit."""
        self.songs += len(frame)
        if self.songs > MAX_CSV_SONGS:
            raise too_many_songs()
        return self.predictor.predict(frame, *args, **kwargs)


def too_many_songs():
    """Return the 413 of a CSV body with more songs than one request may send."""
    return ApiError(413, f"the CSV body holds more than {MAX_CSV_SONGS:,} songs, the most one request may send: "
                         "send the songs in smaller requests")


def score_summary(summary):
    """Return a predict_file.ScoreSummary as the X-Score-Summary header's object.

    scored and skipped count rows; reasons counts the skipped rows by reason (the text before its first colon);
    first_skipped names the first SKIPPED_SHOWN by line; unseen counts the songs with a value of a column
    (genre, artist_name, key, mode, time_signature) that the model never saw.
    """
    reasons = Counter(reason.split(":")[0] for _, reason in summary.bad_rows)
    return {"scored": summary.scored, "skipped": len(summary.bad_rows), "reasons": dict(reasons.most_common()),
            "first_skipped": [{"line": line, "reason": reason} for line, reason in summary.bad_rows[:SKIPPED_SHOWN]],
            "unseen": summary.unseen}


def json_body_songs():
    """Return the validated songs of a JSON body in one of MLflow's shapes, or raise the 400 that says why not.

    A frame has every column for every row, so null in an optional field (pandas' NaN) means the song lacks it.
    """
    try:
        body = parse_json(request_body())
        records = [{name: value for name, value in record.items() if value is not None or name not in OPTIONAL_FIELDS}
                   if isinstance(record, dict) else record for record in mlflow_records(body)]
        return validate_songs(records, MAX_SONGS)[0]
    except BodyError as error:
        raise ApiError(400, error.message, errors=error.errors) from None


def mlflow_records(body):
    """Return the songs of an MLflow body as a list of objects (song i is index i of the errors), or raise
    BodyError."""
    given = sorted(INPUT_KEYS) if not isinstance(body, dict) else [key for key in INPUT_KEYS if key in body]
    others = [key for key in body if key not in INPUT_KEYS and key != "params"] if isinstance(body, dict) else []
    if not isinstance(body, dict) or len(given) != 1 or others:
        found = (f"an object with {', '.join(repr(key[:50]) for key in list(body)[:10]) or 'no fields'}"
                 if isinstance(body, dict) else f"a JSON {json_kind(body)}")
        raise BodyError("body must be a JSON object with exactly one of dataframe_split, dataframe_records, "
                        f"instances or inputs (MLflow's scoring protocol), and optionally params; got {found}")
    if "params" in body and not isinstance(body["params"], dict):
        raise BodyError(f"params must be a JSON object (it is ignored), not a JSON {json_kind(body['params'])}")
    key = given[0]
    value = body[key]
    if key == "dataframe_split":
        return split_records(value)
    if key == "dataframe_records" and not isinstance(value, list):
        raise BodyError(f"dataframe_records must be a list of songs (JSON objects), not a JSON {json_kind(value)}")
    if isinstance(value, dict):  # instances or inputs, columnar
        return columnar_records(key, value)
    if not isinstance(value, list):
        raise BodyError(f"{key} must be a list of songs (JSON objects) or an object of each field's values, "
                        f"not a JSON {json_kind(value)}")
    return value


def split_records(split):
    """Return the songs of a dataframe_split object: {columns, data, index}, as pandas writes a frame."""
    if not isinstance(split, dict):
        raise BodyError(f"dataframe_split must be a JSON object with columns and data, not a JSON {json_kind(split)}")
    unknown = [key for key in split if key not in ("columns", "data", "index")]
    if unknown:
        raise BodyError(f"dataframe_split holds columns, data and optionally index; not {unknown[0][:50]!r}")
    columns, data, index = split.get("columns"), split.get("data"), split.get("index")
    if not isinstance(columns, list) or not all(isinstance(name, str) for name in columns):
        raise BodyError("dataframe_split.columns must be a list of field names (strings)")
    if len(set(columns)) != len(columns):
        twice = next(name for name in columns if columns.count(name) > 1)
        raise BodyError(f"dataframe_split.columns names {twice[:50]!r} twice")
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise BodyError("dataframe_split.data must be a list of rows, each a list of values in the columns' order")
    if not 1 <= len(data) <= MAX_SONGS:
        raise BodyError(f"dataframe_split.data must hold 1 to {MAX_SONGS} songs, not {len(data)}")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise BodyError(f"dataframe_split.index, when given, must be a list as long as data ({len(data)})")
    for i, row in enumerate(data):
        if len(row) != len(columns):
            raise BodyError(f"dataframe_split.data row {i} has {len(row)} values for {len(columns)} columns")
    return [dict(zip(columns, row)) for row in data]


def columnar_records(key, columns):
    """Return the songs of a columnar instances or inputs object: each field's values, every list as long."""
    for name, values in columns.items():
        if not isinstance(values, list):
            raise BodyError(f"{key}.{name[:50]} must be a list of values, one per song, not a JSON "
                            f"{json_kind(values)}")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise BodyError(f"{key}: every field's list must be as long (one value per song); the lengths are "
                        f"{', '.join(map(str, sorted(lengths)))}")
    count = lengths.pop() if lengths else 0
    if not 1 <= count <= MAX_SONGS:
        raise BodyError(f"{key} must hold 1 to {MAX_SONGS} songs, not {count}")
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]


def json_kind(value):
    """Return the JSON name of a decoded value's type."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def copy_body(path):
    """Copy the request's body to `path`, READ_BYTES at a time, refusing one over MAX_CSV_BYTES (413)."""
    codings = request.headers.get("Transfer-Encoding")
    if codings is not None and codings.rsplit(",", 1)[-1].strip().lower() != "chunked":
        raise ApiError(400, f"Transfer-Encoding {codings[:50]!r} is not supported: send the body plainly or chunked")
    too_large = ApiError(413, f"a CSV body may hold at most {MAX_CSV_SONGS:,} songs in {MAX_CSV_BYTES:,} bytes"
                              + (f" (this one has {request.content_length:,} bytes)" if request.content_length
                                 else "") + ": send the songs in smaller requests")
    request.max_content_length = MAX_CSV_BYTES  # this route's limit, not the app's for JSON bodies
    copied = 0
    try:
        with open(path, "wb") as out:
            while block := request.stream.read(READ_BYTES):
                copied += len(block)
                if copied > MAX_CSV_BYTES:
                    raise too_large
                out.write(block)
    except RequestEntityTooLarge:
        raise too_large from None


def score_csv_body(path, predictor, as_csv):
    """Return (each chunk's answer text, rows scored) for a CSV file read as --predict reads one; each chunk is
    encoded as it is scored, so a large body's answer is never held as objects all at once."""
    # Imported here: the CSV reader is needed by CSV bodies only, and a worker starts without it.
    from valence.data.load import CHUNK_ROWS, iter_feature_chunks
    from valence.model.predict_file import bad_row_summary
    chunks, scored, rows, bad_rows = [], 0, 0, []
    try:
        for clean, bad in iter_feature_chunks(path, chunksize=CHUNK_ROWS):
            rows += len(clean) + len(bad)
            if rows > MAX_CSV_SONGS:
                raise too_many_songs()
            bad_rows.extend(bad)
            records = []
            if len(clean):
                result = predictor.predict(clean)
                records = list(zip(clean["line"].tolist(), prediction_records(predictor, result, len(clean))))
                scored += len(clean)
            empty = dict.fromkeys(predictor.output_columns())
            records += [(line, {**empty, "warnings": [], "reason": f"line {line}: {reason}"}) for line, reason in bad]
            records.sort(key=lambda pair: pair[0])
            chunks.append(encode([record for _, record in records], as_csv, predictor))
    except ValenceError as error:
        raise ApiError(400, str(error).replace(str(path), BODY_NAME)) from None
    if scored == 0:
        raise ApiError(400, f"no row of {BODY_NAME} could be scored: {bad_row_summary(bad_rows)}")
    return chunks, scored


def prediction_records(predictor, result, count):
    """Return one answer object per predicted song: valence and its 90 % interval, mood and its probabilities,
    warnings, reason."""
    columns = {name: values if name == "mood" else np.asarray(values, dtype=np.float64).tolist()
               for name, values in result.columns().items()}
    return [{**{name: values[i] for name, values in columns.items()}, "warnings": list(result.warnings[i]),
             "reason": ""} for i in range(count)]


def answer(texts, as_csv, predictor):
    """Answer the encoded chunks as MLflow's {"predictions": [...]} JSON, or as CSV under a header row."""
    if as_csv:
        header = ",".join([*predictor.output_columns(), "warnings", "reason"]) + "\n"
        return current_app.response_class(header + "".join(texts), content_type="text/csv; charset=utf-8")
    return current_app.response_class('{"predictions":[' + ",".join(text for text in texts if text) + "]}\n",
                                      content_type="application/json")


def encode(records, as_csv, predictor):
    """Return records as CSV lines (no header), or as JSON objects separated by commas (no brackets)."""
    if not as_csv:
        return json.dumps(records, separators=(",", ":"), allow_nan=False)[1:-1]
    columns = [*predictor.output_columns(), "warnings", "reason"]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([csv_cell(record[name]) for name in columns]
                                                    for record in records)
    return text.getvalue()


def csv_cell(value):
    """Return a value as a CSV cell: warnings joined by "; ", an empty cell for no value."""
    if isinstance(value, list):
        return "; ".join(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value
