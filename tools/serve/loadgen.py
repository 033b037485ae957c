#!/usr/bin/env python3
"""Throughput and latency of `cyberhost serve` on loopback (stdlib only).

Starts `cyberhost serve` (tiny model unless --weights) on a free port, submits --jobs jobs
(--concurrency at a time, each job: a 64x64 photo, --seconds of speech, --size, --steps),
waits for all of them and prints jobs/min, p50/p95 latency (submission to finished) and run
time, then stops the server with SIGTERM.

    python3 tools/serve/loadgen.py [path/to/cyberhost] --jobs 30 --size 64x64 --steps 2
"""

import argparse
import concurrent.futures as cf
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import wave
import zlib


def png(w, h):
    raw = b"".join(
        b"\x00" + bytes(v for x in range(w) for v in (x * 4 % 251, y * 3 % 241, (x + y) % 239))
        for y in range(h)
    )

    def chunk(t, d):
        c = t + d
        return struct.pack(">I", len(d)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def wav(seconds, rate=16000):
    f = tempfile.SpooledTemporaryFile()
    with wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * (180 + 60 * i / rate) * i / rate)))
            for i in range(int(rate * seconds))))
    f.seek(0)
    return f.read()


def multipart(parts):
    b = "----loadgen" + uuid.uuid4().hex
    out = []
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.append(f"--{b}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{b}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={b}"


def call(method, url, body=None, ctype=None):
    req = urllib.request.Request(url, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


def wait_all(base, ids, limit=900):
    """Poll every job until it is final; their status records, in order."""
    recs = []
    deadline = time.time() + limit
    for jid in ids:
        while True:
            s = json.loads(call("GET", f"{base}/v1/jobs/{jid}")[1])
            if s["state"] in ("succeeded", "failed", "cancelled"):
                recs.append(s)
                break
            if time.time() > deadline:
                raise SystemExit(f"job {jid} still {s['state']} after {limit} s")
            time.sleep(0.05)
    return recs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="target/release/cyberhost")
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=30)
    ap.add_argument("--size", default="64x64")
    ap.add_argument("--steps", default="2")
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--workers", default="1")
    ap.add_argument("--weights")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="cyberhost-loadgen-")
    cmd = [a.binary, "serve", "--addr", "127.0.0.1:0", "--jobs-dir", os.path.join(tmp, "jobs"),
           "--workers", a.workers, "--max-queue", str(a.jobs)]
    if a.weights:
        cmd += ["--weights", a.weights]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
    while call("GET", base + "/readyz")[0] != 200:
        time.sleep(0.05)
    body, ctype = multipart([("image", "p.png", png(64, 64)), ("audio", "s.wav", wav(a.seconds)),
                             ("size", None, a.size.encode()), ("steps", None, a.steps.encode())])

    def submit(_):
        status, data, headers = call("POST", base + "/v1/jobs", body, ctype)
        if status != 202:
            raise SystemExit(f"submission answered {status}: {data[:200]!r}")
        return json.loads(data)["id"]

    t0 = time.time()
    with cf.ThreadPoolExecutor(a.concurrency) as ex:
        ids = list(ex.map(submit, range(a.jobs)))
    recs = wait_all(base, ids)
    wall = max(r["finished"] for r in recs) - min(r["created"] for r in recs)
    proc.terminate()
    proc.wait(timeout=60)
    bad = [r for r in recs if r["state"] != "succeeded"]
    lat = [r["finished"] - r["created"] for r in recs]
    run = [r["finished"] - r["started"] for r in recs]
    print(f"{len(recs)} jobs ({a.size}, {a.steps} steps, {a.seconds} s speech, {a.workers} worker(s)), "
          f"{len(bad)} not succeeded, wall {wall:.1f} s (client {time.time() - t0:.1f} s)")
    print(f"throughput {len(recs) / wall * 60:.1f} jobs/min")
    print(f"latency (submit to done) p50 {pct(lat, 50):.2f} s, p95 {pct(lat, 95):.2f} s")
    print(f"run time per job p50 {pct(run, 50):.2f} s, p95 {pct(run, 95):.2f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
