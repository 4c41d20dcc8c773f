"""Score a CSV of songs with a Predictor, streamed in chunks (the command line's --predict)."""
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from valence.config import ValenceError, counted
from valence.data.load import CHUNK_ROWS, counted_reason, iter_feature_chunks
from valence.fileio import atomic_path
from valence.model.intervals import DEFAULT_LEVEL

OUTPUT_ID_COLUMNS = ("track_id", "artist_name", "track_name", "genre")
REASON = "reason"  # why a row was not scored; empty when it was
FIRST_LINES = 5  # bad rows named by line in the message of a file of which no row could be scored


@dataclass
class ScoreSummary:
    """What scoring a file did: rows scored, bad rows by line, and rows with values the model never saw."""

    scored: int = 0
    bad_rows: list = field(default_factory=list)  # (line, reason)
    unseen: dict = field(default_factory=dict)  # column -> rows with a value the model never saw


def score_csv(input_path, output_path, predictor, chunksize=CHUNK_ROWS, explainer=None, level=DEFAULT_LEVEL):
    """Score a CSV into `output_path`, one output row per input row; return a ScoreSummary.

    A row that cannot be scored keeps its place with an empty prediction and the reason, so the
    output lines up with the input. Each predicted_valence has its interval at `level` in valence_low and
    valence_high (intervals.py). With an Explainer, each row also gets base_value and one
    contribution_<group> column per feature group; they add up to predicted_valence (6 decimals,
    so rounding keeps the sum within 0.0001).
    """
    summary, unseen, columns, waiting = ScoreSummary(), Counter(), None, []
    with atomic_path(output_path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as out:
            for chunk, chunk_bad, named in iter_feature_chunks(input_path, chunksize=chunksize, identities=True):
                summary.bad_rows.extend(chunk_bad)
                # A row that cannot be scored keeps what names it (track_id, names, genre), as far as it has them.
                bad = named.assign(**{REASON: [reason for _, reason in chunk_bad]})
                if len(chunk) == 0:
                    waiting.append(bad)  # written once a scored chunk has fixed the columns
                    continue
                table = _scored_table(chunk, predictor, explainer, unseen, level)
                if columns is None:
                    columns = [c for c in table.columns if c != "line"] + [REASON]
                    for earlier in waiting:
                        _write(out, earlier, columns, header=earlier is waiting[0])
                    header = not waiting
                    waiting = []
                else:
                    header = False
                _write(out, pd.concat([table, bad], ignore_index=True), columns, header)
                summary.scored += len(chunk)
        if summary.scored == 0:
            raise ValenceError(f"no row of {input_path} could be scored: {bad_row_summary(summary.bad_rows)}")
    summary.unseen = dict(unseen)
    return summary


def _scored_table(chunk, predictor, explainer, unseen, level):
    """Return a chunk's output rows with their line numbers; count the unseen values it holds."""
    result = predictor.predict(chunk, level)
    table = chunk[[c for c in (*OUTPUT_ID_COLUMNS, "valence", "line") if c in chunk]].copy()
    if result.valence is not None:
        table["predicted_valence"] = np.round(result.valence, 4)
        table["valence_low"], table["valence_high"] = np.round(result.low, 4), np.round(result.high, 4)
    if result.mood is not None:
        table["predicted_mood"] = result.mood
    if explainer is not None:
        explanation = explainer.explain(chunk)
        table["base_value"] = round(explanation.base_value, 6)
        for j, group in enumerate(explanation.groups):
            table[f"contribution_{group}"] = np.round(explanation.contributions[:, j], 6)
    # Each warning reads "unknown <column> ...": one count per row and column.
    unseen.update(column for row in result.warnings for column in {w.split(" ", 2)[1] for w in row})
    return table


def _write(out, table, columns, header):
    """Append rows in input order (by line) with the file's columns; missing values are empty."""
    table.sort_values("line", kind="stable").reindex(columns=columns).to_csv(out, index=False, header=header)


def bad_row_summary(bad_rows, shown=FIRST_LINES):
    """Say why rows could not be scored: each reason with its count, then the first rows by line."""
    if not bad_rows:
        return "it has a header but no data rows"
    counts = Counter(reason.split(":")[0] for _, reason in bad_rows)
    by_count = ", ".join(counted_reason(reason, count) for reason, count in counts.most_common())
    first = "; ".join(f"line {line}: {reason}" for line, reason in bad_rows[:shown])
    more = f"; ... and {len(bad_rows) - shown:,} more" if len(bad_rows) > shown else ""
    return f"{counted(len(bad_rows), 'bad row')} ({by_count}); {first}{more}"
