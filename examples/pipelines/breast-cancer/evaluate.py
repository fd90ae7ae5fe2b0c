#!/usr/bin/python3
"""evaluate: scores an XGBoost JSON model on a held-out CSV.

Writes {"accuracy", "auc", "f1"} as a flat JSON object (f1 and accuracy at a
0.5 threshold; the positive class is target=1, benign in scikit-learn's
encoding) and prints them.
"""
import argparse
import csv
import json
import math
import os
import sys

EXCLUDED = ("id", "target")


def fail(message):
    print(f"evaluate: error: {message}", file=sys.stderr)
    sys.exit(1)


def load_xy(path):
    """Reads the CSV: (feature names, X as float64 with NaN for empty cells, y)."""
    import numpy as np
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
    if "target" not in header:
        fail(f"{path} has no 'target' column")
    if not rows:
        fail(f"{path} has no data rows")
    t = header.index("target")
    cols = [i for i, name in enumerate(header) if name not in EXCLUDED]
    X = np.empty((len(rows), len(cols)), dtype=np.float64)
    y = np.empty(len(rows), dtype=np.int64)
    for r, row in enumerate(rows):
        line = r + 2
        if len(row) != len(header):
            fail(f"{path} line {line}: {len(row)} fields, header has {len(header)}")
        if row[t] not in ("0", "1"):
            fail(f"{path} line {line}: target is {row[t]!r}, expected 0 or 1")
        y[r] = int(row[t])
        for c, i in enumerate(cols):
            cell = row[i].strip()
            try:
                X[r, c] = float(cell) if cell else math.nan
            except ValueError:
                fail(f"{path} line {line}: column {header[i]!r} is {row[i]!r}, not a number")
    return [header[i] for i in cols], X, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="XGBoost JSON model (from train.py)")
    parser.add_argument("--test", required=True, help="test CSV")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    args = parser.parse_args()

    try:
        with open(args.model, "rb") as f:
            raw = f.read()
    except OSError as e:
        fail(f"cannot read {args.model}: {e.strerror}")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        fail(f"{args.model} is not JSON (expected an XGBoost JSON model)")
    if not isinstance(doc, dict) or "learner" not in doc:
        fail(f"{args.model} is JSON but not an XGBoost model (no 'learner' key)")

    import numpy as np
    import xgboost as xgb
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    booster = xgb.Booster(params={"nthread": 1})
    try:
        booster.load_model(bytearray(raw))
    except xgb.core.XGBoostError as e:
        fail(f"xgboost cannot load {args.model}: {str(e).splitlines()[0]}")

    features, X, y = load_xy(args.test)
    if booster.feature_names is not None and list(booster.feature_names) != features:
        missing = [f for f in booster.feature_names if f not in features]
        extra = [f for f in features if f not in booster.feature_names]
        def some(names):
            return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") \
                if names else "none"
        fail(f"{args.test} columns do not match the model's features "
             f"(missing: {some(missing)}; unexpected: {some(extra)}"
             f"{'; same names in a different order' if not missing and not extra else ''})")
    if booster.num_features() != X.shape[1]:
        fail(f"model expects {booster.num_features()} features, {args.test} has {X.shape[1]}")
    if len(np.unique(y)) < 2:
        fail(f"{args.test} has only target={int(y[0])}; AUC needs both classes")
    print(f"evaluate: {X.shape[0]} test rows, {X.shape[1]} features")

    p = booster.predict(xgb.DMatrix(X, feature_names=features, nthread=1))
    pred = (p >= 0.5).astype(int)
    metrics = {
        "auc": round(float(roc_auc_score(y, p)), 6),
        "accuracy": round(float(accuracy_score(y, pred)), 6),
        "f1": round(float(f1_score(y, pred)), 6),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.metrics)), exist_ok=True)
    tmp = f"{args.metrics}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, args.metrics)
    print(f"evaluate: auc={metrics['auc']:.4f} accuracy={metrics['accuracy']:.4f} "
          f"f1={metrics['f1']:.4f}")
    print(f"evaluate: wrote {args.metrics}")


if __name__ == "__main__":
    main()
