"""Time what a 1,000-song POST /predict body costs before the model runs: decoding, validation, columns.

    python bench/body_speed.py            # median of 200 runs each, in process
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from valence import config  # noqa: E402
from valence.api.schemas import songs_to_columns, validate_songs  # noqa: E402
from valence.api.strict_json import parse_json  # noqa: E402
from valence.data.synthetic import generate_dataset  # noqa: E402


def median_ms(work, runs):
    """Return the median time of `runs` calls of work, in milliseconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main():
    """Print the median cost of each step for one body of 1,000 catalog-like songs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="timed runs of each step (default: 200)")
    args = parser.parse_args()
    frame = generate_dataset(1000, seed=1)
    columns = [*config.FEATURE_COLUMNS, "artist_name", "track_name", "track_id", "valence"]
    raw = frame[columns].to_json(orient="records").encode()  # whole catalog rows, as a client may send them
    body = parse_json(raw)
    songs, _ = validate_songs(body)
    print(f"1,000 songs, {len(raw):,} bytes; median of {args.runs} runs")
    print(f"  strict JSON decoding   {median_ms(lambda: parse_json(raw), args.runs):6.2f} ms")
    print(f"  validation (pydantic)  {median_ms(lambda: validate_songs(body), args.runs):6.2f} ms")
    print(f"  columns for the model  {median_ms(lambda: songs_to_columns(songs), args.runs):6.2f} ms")
    print(f"  all three              {median_ms(lambda: songs_to_columns(validate_songs(parse_json(raw))[0]), args.runs):6.2f} ms")


if __name__ == "__main__":
    main()
