#!/usr/bin/python3
"""traffic: prediction requests for the demo, with inputs that drift.

    traffic.py --url URL --token TOKEN [--ramp-seconds 20] [--scale 1.3]

Sends 3-row predictions ({"instances": [...]}) of scikit-learn's breast
cancer rows to URL/v1/endpoints/breast-cancer/predict until killed. Every
feature is multiplied by a factor that grows linearly from 1 to --scale over
--ramp-seconds, then stays there: the gradual shift of an instrument drifting
out of calibration. Rows are drawn with a fixed seed.
"""
import argparse
import json
import random
import sys
import time
import urllib.request

from sklearn.datasets import load_breast_cancer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--ramp-seconds", type=float, default=20)
    ap.add_argument("--scale", type=float, default=1.3)
    ap.add_argument("--endpoint", default="breast-cancer")
    args = ap.parse_args()
    rows = load_breast_cancer().data.tolist()
    rng = random.Random(7)
    start = time.monotonic()
    target = f"{args.url}/v1/endpoints/{args.endpoint}/predict"
    while True:
        t = time.monotonic() - start
        factor = 1 + (args.scale - 1) * min(1.0, t / args.ramp_seconds)
        batch = [[v * factor for v in rows[rng.randrange(len(rows))]] for _ in range(3)]
        req = urllib.request.Request(
            target, data=json.dumps({"instances": batch}).encode(),
            headers={"Authorization": f"Bearer {args.token}",
                     "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=5).read()
        except Exception as e:  # the demo goes on; a failed request is the gateway's to count
            print(f"traffic: {e}", file=sys.stderr)
            time.sleep(0.2)
        time.sleep(0.01)


if __name__ == "__main__":
    main()
