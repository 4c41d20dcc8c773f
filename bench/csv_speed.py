"""Reading a Kaggle-sized CSV: the project's loader against the least a standard-library csv reader must do.

    python bench/csv_speed.py            # 232,725 generated rows, 3 rounds each, interleaved

The loader (valence.data.load.load_dataset) frames records with numpy and parses fields with pandas'
C parser. A loader built on the csv module would at least decode the text (with an error handler for
cp1252 lines), split every record with csv.reader (its line numbers from reader.line_num) and build
the columns from Python lists; that floor is timed here without any of the checks, repairs and
reasons the loader adds. If the floor is slower than the whole loader, the csv module cannot do the
framer's job without loading getting slower.
"""
import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from valence.data.load import load_dataset  # noqa: E402
from valence.data.synthetic import generate_dataset, write_csv  # noqa: E402


def csv_module_floor(path):
    """Decode, split and column-build a CSV with the csv module: the least a csv-module loader does."""
    import numpy as np
    import pandas as pd

    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows, lines = [], []
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)
    columns = list(zip(*rows))
    frame = pd.DataFrame({name: np.asarray(values, dtype=object) for name, values in zip(header, columns)})
    frame["line"] = lines
    return frame


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=232_725, help="generated rows (default: 232725)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each (default: 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "songs.csv"
        write_csv(generate_dataset(args.rows, seed=0), path)
        times = {"load_dataset (the project's loader, every check)": [], "csv module floor (no checks)": []}
        for _ in range(args.rounds):
            for name, read in zip(times, (lambda: load_dataset(path), lambda: csv_module_floor(path))):
                started = time.perf_counter()
                read()
                times[name].append(time.perf_counter() - started)
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB, {args.rounds} interleaved rounds:")
        for name, values in times.items():
            print(f"  {name:52s} median {statistics.median(values):.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
        loader, floor = (statistics.median(v) for v in times.values())
        print(f"  the csv module's floor takes {floor / loader:.2f}x the loader's time")


if __name__ == "__main__":
    main()
