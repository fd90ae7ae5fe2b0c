#!/usr/bin/python3
"""split: stratified train/test split of a CSV with a 0/1 `target` column.

Rows are copied byte for byte (no re-formatting) and keep their original order
within each file, so the same input, --test-size and --seed always give the
same two files.
"""
import argparse
import csv
import os
import sys


def fail(message):
    print(f"split: error: {message}", file=sys.stderr)
    sys.exit(1)


def read_csv(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    except (csv.Error, UnicodeDecodeError) as e:
        fail(f"{path} is not a readable CSV file: {e}")
    if not table:
        fail(f"{path} is empty (no header row)")
    header, rows = table[0], table[1:]
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            fail(f"{path} line {line}: {len(row)} fields, header has {len(header)}")
    return header, rows


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="input CSV (with a target column)")
    parser.add_argument("--test-size", type=float, default=0.25,
                        help="fraction of rows for the test set, in (0, 1)")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument("--train", required=True, help="train CSV to write")
    parser.add_argument("--test", required=True, help="test CSV to write")
    args = parser.parse_args()
    if not 0.0 < args.test_size < 1.0:
        fail(f"--test-size must be between 0 and 1 (exclusive), got {args.test_size}")
    if args.seed < 0:
        fail(f"--seed must be non-negative, got {args.seed}")

    header, rows = read_csv(args.data)
    if "target" not in header:
        fail(f"{args.data} has no 'target' column (columns: {', '.join(header)})")
    t = header.index("target")
    labels = []
    for line, row in enumerate(rows, start=2):
        if row[t] not in ("0", "1"):
            fail(f"{args.data} line {line}: target is {row[t]!r}, expected 0 or 1")
        labels.append(int(row[t]))
    print(f"split: read {len(rows)} rows from {args.data} "
          f"(target=0: {labels.count(0)}, target=1: {labels.count(1)})")

    import numpy as np
    from sklearn.model_selection import train_test_split
    try:
        train_idx, test_idx = train_test_split(
            np.arange(len(rows)), test_size=args.test_size,
            random_state=args.seed, stratify=np.array(labels))
    except ValueError as e:
        fail(f"cannot split {len(rows)} rows with --test-size {args.test_size}: {e}")

    train_rows = [rows[i] for i in sorted(train_idx)]
    test_rows = [rows[i] for i in sorted(test_idx)]
    write_csv(args.train, header, train_rows)
    write_csv(args.test, header, test_rows)
    print(f"split: wrote {len(train_rows)} train rows to {args.train}, "
          f"{len(test_rows)} test rows to {args.test} (seed {args.seed})")


if __name__ == "__main__":
    main()
