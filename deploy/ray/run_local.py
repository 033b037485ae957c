#!/usr/bin/env python3
"""Start a local Ray cluster on the CPU, deploy deploy/ray/app.py with 2 replicas of the tiny
model, push 20 jobs through its HTTP jobs API, and check that every job succeeded with an MP4
and that both replicas took work.

    pip install "ray[serve]" && (cd python && maturin build --release -o dist) \
        && pip install python/dist/cyberhost-*.whl
    python3 deploy/ray/run_local.py [--jobs 20] [--replicas 2]

Prints `N passed, M failed` at the end; exit 0 only when every job succeeded.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "serve"))

from loadgen import call, multipart, pct, png, wait_all, wav  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--port", type=int, default=8000)
    a = ap.parse_args()

    jobs_dir = tempfile.mkdtemp(prefix="cyberhost-ray-jobs-")  # "shared storage" on one node
    env = {
        "CYBERHOST_JOBS_DIR": jobs_dir,
        "CYBERHOST_WEIGHTS": "tiny",
        "CYBERHOST_BACKEND": "cpu",
        "CYBERHOST_MIN_REPLICAS": str(a.replicas),
        "CYBERHOST_MAX_REPLICAS": str(a.replicas),
        "CYBERHOST_MAX_QUEUE": str(a.jobs),
        "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    os.environ.update(env)
    sys.path.insert(0, HERE)

    import ray
    from ray import serve

    ray.init(num_cpus=a.replicas + 1, include_dashboard=False, runtime_env={"env_vars": env})
    serve.start(http_options={"host": "127.0.0.1", "port": a.port})
    from app import app  # noqa: E402 - reads the settings above

    t0 = time.time()
    serve.run(app, route_prefix="/")
    base = f"http://127.0.0.1:{a.port}"
    print(f"deployed in {time.time() - t0:.1f} s: {a.replicas} Generator replicas (tiny, cpu)")

    body, ctype = multipart([("image", "p.png", png(64, 64)), ("audio", "s.wav", wav(0.5)),
                             ("size", None, b"64x64"), ("steps", None, b"2")])
    ids = []
    for _ in range(a.jobs):
        status, data, _ = call("POST", base + "/v1/jobs", body, ctype)
        if status != 202:
            raise SystemExit(f"submission answered {status}: {data[:300]!r}")
        ids.append(json.loads(data)["id"])
    recs = wait_all(base, ids)
    passed = failed = 0
    for r in recs:
        status, data, headers = call("GET", f"{base}/v1/jobs/{r['id']}/result")
        ok = r["state"] == "succeeded" and status == 200 and data[4:8] == b"ftyp"
        passed += ok
        failed += not ok
        if not ok:
            print(f"job {r['id']}: {r['state']} {r.get('error')}")
    replicas = sorted({r.get("replica") for r in recs})
    wall = max(r["finished"] for r in recs) - min(r["created"] for r in recs)
    lat = [r["finished"] - r["created"] for r in recs]
    print(f"{len(recs)} jobs in {wall:.1f} s: {len(recs) / wall * 60:.1f} jobs/min, "
          f"latency p50 {pct(lat, 50):.1f} s p95 {pct(lat, 95):.1f} s")
    print(f"replicas that ran jobs: {len(replicas)} ({', '.join(map(str, replicas))})")
    if len(replicas) < min(2, a.replicas):
        print("FAILED: not every replica took work")
        failed += 1
    serve.shutdown()
    ray.shutdown()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
