"""The reference design for bench/serving_bench.sh: an XGBoost model behind
FastAPI + uvicorn, written the way a data scientist would write it.

    MODEL_PATH=model.json python3 -m uvicorn fastapi_app:app \
        --host 127.0.0.1 --port 8000 --workers 2 --log-level warning --no-access-log

POST /v1/endpoints/{name}/predict
    {"instances": [[f1, ..., f30], ...]}                 rows in the model's feature order
    {"instances": [{"mean_radius": 17.99, ...}, ...]}    or objects keyed by feature name
 -> {"predictions": [p, ...], "model_version": "1"}      P(class 1) per row

Environment: MODEL_PATH (required), ENDPOINT_NAME (default "bench"; other
names answer 404), MODEL_VERSION (default "1"), FASTAPI_HANDLER (async, the
default, or sync: the route as `async def` or plain `def`, see below).
Each uvicorn worker process loads its own Booster, predicting on one thread.
"""
import math
import os
from typing import Dict, List, Union

import numpy as np
import xgboost as xgb
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODEL_PATH = os.environ["MODEL_PATH"]
ENDPOINT_NAME = os.environ.get("ENDPOINT_NAME", "bench")
MODEL_VERSION = os.environ.get("MODEL_VERSION", "1")
HANDLER = os.environ.get("FASTAPI_HANDLER", "async")
if HANDLER not in ("async", "sync"):
    raise SystemExit(f"FASTAPI_HANDLER must be async or sync, not {HANDLER!r}")

booster = xgb.Booster(params={"nthread": 1}, model_file=MODEL_PATH)
FEATURES = booster.feature_names or []
N_FEATURES = booster.num_features()

app = FastAPI(title="xgboost reference service")


class PredictRequest(BaseModel):
    instances: Union[List[List[float]], List[Dict[str, float]]]


class PredictResponse(BaseModel):
    predictions: List[float]
    model_version: str


def to_matrix(instances) -> np.ndarray:
    if not instances:
        raise HTTPException(status_code=400, detail="instances is empty")
    if isinstance(instances[0], dict):
        unknown = set().union(*instances) - set(FEATURES)
        if unknown:
            raise HTTPException(status_code=400, detail=f"unknown features: {sorted(unknown)}")
        # Absent features are missing values (NaN), as XGBoost treats them.
        return np.array([[row.get(f, math.nan) for f in FEATURES] for row in instances],
                        dtype=np.float32)
    for i, row in enumerate(instances):
        if len(row) != N_FEATURES:
            raise HTTPException(status_code=400,
                                detail=f"instance {i} has {len(row)} values, the model takes {N_FEATURES}")
    return np.array(instances, dtype=np.float32)


def predict(name: str, request: PredictRequest) -> dict:
    if name != ENDPOINT_NAME:
        raise HTTPException(status_code=404, detail=f"no endpoint {name!r}")
    X = to_matrix(request.instances)
    proba = booster.inplace_predict(X, validate_features=False)
    return {"predictions": proba.tolist(), "model_version": MODEL_VERSION}


# A one-row prediction is ~0.2 ms of CPU. A plain `def` route would run it on
# FastAPI's thread pool, and that hop costs more than it saves: the default
# `async def` route predicts on the event loop instead, which gave about 35%
# more req/s on the 2-core bench box (FASTAPI_HANDLER=sync for the `def` route).
if HANDLER == "sync":
    @app.post("/v1/endpoints/{name}/predict", response_model=PredictResponse)
    def predict_route(name: str, request: PredictRequest):
        return predict(name, request)
else:
    @app.post("/v1/endpoints/{name}/predict", response_model=PredictResponse)
    async def predict_route(name: str, request: PredictRequest):
        return predict(name, request)
