#!/usr/bin/python3
"""ingest: writes scikit-learn's bundled Wisconsin breast cancer data as CSV.

The data ships inside scikit-learn (sklearn/datasets/data/breast_cancer.csv),
so nothing is downloaded. --scale multiplies every feature (a shifted copy
of the data, as the demo's "new data"). Output columns: id (1..n), the 30 features with
spaces replaced by underscores (mean_radius, ..., worst_fractal_dimension),
and target (0 = malignant, 1 = benign, scikit-learn's encoding). Floats are
written with repr() (shortest round-trip form), so the bytes are the same on
every run.
"""
import argparse
import csv
import os
import re
import sys


def fail(message):
    print(f"ingest: error: {message}", file=sys.stderr)
    sys.exit(1)


def write_atomically(path, header, rows):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--rows", type=int, default=None,
                        help="keep only the first N rows (default: all 569)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every feature by this factor (default 1: the data as "
                             "published); the demo's 'new data' after an instrument "
                             "recalibration")
    args = parser.parse_args()
    if args.rows is not None and args.rows < 1:
        fail(f"--rows must be at least 1, got {args.rows}")
    if not args.scale > 0:
        fail(f"--scale must be positive, got {args.scale}")

    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as e:
        fail(f"cannot import scikit-learn ({e}); install python3-sklearn "
             "and run with Debian's /usr/bin/python3")

    data = load_breast_cancer()
    features = [name.strip().replace(" ", "_") for name in data.feature_names]
    for name in features:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            fail(f"unexpected feature name {name!r} in scikit-learn's dataset")
    total = len(data.target)
    n = total if args.rows is None else args.rows
    if n > total:
        fail(f"--rows {n} asks for more rows than the dataset has ({total})")
    print(f"ingest: loaded breast cancer data: {total} rows, {len(features)} features")

    header = ["id"] + features + ["target"]
    rows = []
    for i in range(n):
        values = [repr(float(v) * args.scale if args.scale != 1.0 else float(v))
                  for v in data.data[i]]
        rows.append([str(i + 1)] + values + [str(int(data.target[i]))])
    write_atomically(args.out, header, rows)
    print(f"ingest: wrote {n} rows x {len(header)} columns to {args.out}")


if __name__ == "__main__":
    main()
