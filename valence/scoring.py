"""Score a CSV of songs with a Predictor, streamed in chunks (the command line's --predict)."""
import numpy as np

from .config import ValenceError
from .data import CHUNK_ROWS, iter_feature_chunks
from .fileio import atomic_path

OUTPUT_ID_COLUMNS = ("track_id", "artist_name", "track_name", "genre")


def score_csv(input_path, output_path, predictor, chunksize=CHUNK_ROWS, explainer=None):
    """Score every good row of a CSV into `output_path`; return (rows scored, bad rows).

    With an Explainer, each row also gets base_value and one contribution_<group> column per feature
    group; they add up to predicted_valence (6 decimals, so rounding keeps the sum within 0.0001).
    """
    scored, bad_rows, header = 0, [], True
    with atomic_path(output_path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as out:
            for chunk, chunk_bad in iter_feature_chunks(input_path, chunksize=chunksize):
                bad_rows.extend(chunk_bad)
                if len(chunk) == 0:
                    continue
                result = predictor.predict(chunk)
                columns = [c for c in (*OUTPUT_ID_COLUMNS, "valence") if c in chunk]
                table = chunk[columns].copy()
                if result.valence is not None:
                    table["predicted_valence"] = np.round(result.valence, 4)
                if result.mood is not None:
                    table["predicted_mood"] = result.mood
                if explainer is not None:
                    explanation = explainer.explain(chunk)
                    table["base_value"] = round(explanation.base_value, 6)
                    for j, group in enumerate(explanation.groups):
                        table[f"contribution_{group}"] = np.round(explanation.contributions[:, j], 6)
                table.to_csv(out, index=False, header=header)
                header = False
                scored += len(chunk)
        if scored == 0:
            raise ValenceError(f"no row of {input_path} could be scored ({len(bad_rows)} bad rows)")
    return scored, bad_rows
