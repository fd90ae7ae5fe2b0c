#!/usr/bin/python3
"""train: fits an XGBoost binary classifier on a CSV with a 0/1 `target` column.

Features are every column except `id` and `target`. The model is written in
XGBoost's JSON model format (the file save_model("model.json") writes; it
records the feature names), and the training-set metrics as a flat JSON
object. Deterministic: one thread, fixed seed, exact tree method.
"""
import argparse
import csv
import json
import math
import os
import sys

EXCLUDED = ("id", "target")


def fail(message):
    print(f"train: error: {message}", file=sys.stderr)
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
    if not cols:
        fail(f"{path} has no feature columns besides {', '.join(EXCLUDED)}")
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
            if math.isinf(X[r, c]):
                fail(f"{path} line {line}: column {header[i]!r} is infinite")
    return [header[i] for i in cols], X, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training CSV")
    parser.add_argument("--max-depth", type=int, default=4)
    parser.add_argument("--n-estimators", type=int, default=100, help="boosting rounds")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--model", required=True, help="model file to write (XGBoost JSON)")
    parser.add_argument("--metrics", required=True, help="training metrics JSON to write")
    args = parser.parse_args()
    if not 1 <= args.max_depth <= 32:
        fail(f"--max-depth must be in 1..32, got {args.max_depth}")
    if not 1 <= args.n_estimators <= 100000:
        fail(f"--n-estimators must be in 1..100000, got {args.n_estimators}")
    if not 0.0 < args.learning_rate <= 1.0:
        fail(f"--learning-rate must be in (0, 1], got {args.learning_rate}")

    import numpy as np
    import xgboost as xgb
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    features, X, y = load_xy(args.train)
    if len(np.unique(y)) < 2:
        fail(f"{args.train} has only target={int(y[0])}; both classes are needed")
    print(f"train: {X.shape[0]} rows, {X.shape[1]} features "
          f"(xgboost {xgb.__version__}, max_depth={args.max_depth}, "
          f"n_estimators={args.n_estimators}, learning_rate={args.learning_rate})")

    dtrain = xgb.DMatrix(X, label=y, feature_names=features, nthread=1)
    params = {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "max_depth": args.max_depth,
        "eta": args.learning_rate,
        "tree_method": "exact",
        "nthread": 1,
        "seed": 0,
    }
    booster = xgb.train(params, dtrain, num_boost_round=args.n_estimators)

    p = booster.predict(dtrain)
    metrics = {
        "train_auc": round(float(roc_auc_score(y, p)), 6),
        "train_logloss": round(float(log_loss(y, p, labels=[0, 1])), 6),
        "train_accuracy": round(float(accuracy_score(y, (p >= 0.5).astype(int))), 6),
        "train_rows": int(X.shape[0]),
    }

    # save_raw("json") is the same bytes as save_model("x.json"), but does not
    # depend on the file name ending in .json (1.7 picks the old binary
    # format otherwise) and lets us write atomically.
    for path, data in ((args.model, bytes(booster.save_raw("json"))),
                       (args.metrics, (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    print(f"train: train_auc={metrics['train_auc']:.4f} "
          f"train_logloss={metrics['train_logloss']:.4f} "
          f"train_accuracy={metrics['train_accuracy']:.4f}")
    print(f"train: wrote model to {args.model}, metrics to {args.metrics}")


if __name__ == "__main__":
    main()
