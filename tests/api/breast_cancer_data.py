#!/usr/bin/python3
"""Writes scikit-learn's bundled breast cancer data for the monitoring tests.

    breast_cancer_data.py --out DIR

DIR/reference.csv: header (feature names with spaces as '_', then target)
and all 569 rows, the training data of bench/serving/make_model.py's model.
DIR/rows.json: {"features": [...], "rows": [[30 floats]...], "targets": [...]}.
Nothing is downloaded; the bytes are the same on every run.
"""
import argparse
import csv
import json
import os

from sklearn.datasets import load_breast_cancer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "reference.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names + ["target"])
        for row, y in zip(data.data, data.target):
            w.writerow([repr(float(v)) for v in row] + [int(y)])
    with open(os.path.join(args.out, "rows.json"), "w") as f:
        json.dump({"features": names,
                   "rows": [[float(v) for v in row] for row in data.data],
                   "targets": [int(y) for y in data.target]}, f)
    print(f"breast_cancer_data: {len(data.target)} rows, {len(names)} features -> {args.out}")


if __name__ == "__main__":
    main()
