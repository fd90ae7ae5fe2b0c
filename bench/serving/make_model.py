#!/usr/bin/env python3
"""Trains the serving benchmark's model and writes a sample request.

    make_model.py --out model.json --row-out row.json

The model: an XGBoost binary classifier (binary:logistic, 100 trees of depth
<= 4, eta 0.1, exact tree method, one thread, seed 42) trained on all 569 rows
of scikit-learn's bundled breast cancer data set (30 float features, no
download). Feature names are sklearn's with spaces replaced by '_'
("mean radius" -> "mean_radius"); the model is saved with Booster.save_model
in XGBoost's JSON format, which records them (learner.feature_names).
The row file is a predict request body, {"instances": [[30 floats]]}, holding
the first data row.

Nothing in the training is random (no subsampling, one thread, exact splits),
so the same XGBoost version writes the same bytes on every run.
Prints one summary line on success.
"""
import argparse
import json
import sys

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer

PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "max_depth": 4,
    "learning_rate": 0.1,
    "nthread": 1,
    "tree_method": "exact",
    "random_state": 42,
}
N_ESTIMATORS = 100


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="model file to write (XGBoost JSON, ends in .json)")
    ap.add_argument("--row-out", required=True, help="sample request body to write")
    ap.add_argument("--check-out", help="also write the first 20 rows and Python XGBoost's "
                    "predictions for them: {\"rows\": [...], \"predictions\": [...]} (tests "
                    "compare the C API runtime with it)")
    args = ap.parse_args()
    if not args.out.endswith(".json"):
        ap.error("--out must end in .json (XGBoost picks the format from the extension)")

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    X = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target, dtype=np.float64)

    dtrain = xgb.DMatrix(X, label=y, feature_names=names, nthread=1)
    booster = xgb.train(PARAMS, dtrain, num_boost_round=N_ESTIMATORS)
    booster.save_model(args.out)

    row = [float(v) for v in X[0]]
    with open(args.row_out, "w") as f:
        json.dump({"instances": [row]}, f)
        f.write("\n")

    if args.check_out:
        rows = X[:20]
        preds = booster.inplace_predict(rows)
        with open(args.check_out, "w") as f:
            json.dump({"feature_names": names,
                       "rows": [[float(v) for v in r] for r in rows],
                       "predictions": [float(v) for v in preds]}, f)
            f.write("\n")

    p = float(booster.inplace_predict(X[:1])[0])
    print(f"make_model: {args.out}: xgboost {xgb.__version__}, {booster.num_boosted_rounds()} trees, "
          f"{len(names)} features, {X.shape[0]} rows; {args.row_out}: row 0, p = {p:.9g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
