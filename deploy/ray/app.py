"""Ray Serve deployment of cyberhost: the jobs API of `cyberhost serve`, scaled out.

Two deployments:

* ``Generator`` - one replica per GPU (``num_gpus=1``; 0 on a CPU cluster), autoscaling between
  ``CYBERHOST_MIN_REPLICAS`` and ``CYBERHOST_MAX_REPLICAS`` on ongoing requests. Each replica
  loads the model once through the Python binding (``cyberhost.Pipeline``) and runs one job at a
  time (``max_ongoing_requests=1``).
* ``JobsApi`` - the HTTP ingress (FastAPI): the same routes, fields, status codes and event
  stream as ``cyberhost serve`` (docs/serving.md): POST /v1/jobs (202 / 400 / 401 / 413 / 429),
  GET /v1/jobs/{id}, /events (SSE: the ``generate --json`` events), /result (video/mp4, Range),
  DELETE (cancel at the next sampler step), /healthz, /readyz.

Jobs, inputs, progress and results live on shared storage (``CYBERHOST_JOBS_DIR``; a directory
every node mounts, e.g. NFS or a cloud filesystem), in the layout of ``cyberhost serve``:
``<id>/job.json`` (written atomically), ``<id>/events.jsonl``, ``<id>/result.mp4``. A replica
that dies mid-job leaves it ``running`` on disk; the ingress re-dispatches queued and running
jobs when it starts.

Settings (environment): CYBERHOST_JOBS_DIR, CYBERHOST_WEIGHTS ("tiny" | "paper" | dir),
CYBERHOST_BACKEND ("cpu" | "cuda"), CYBERHOST_NUM_GPUS (per replica, default 1),
CYBERHOST_MIN_REPLICAS, CYBERHOST_MAX_REPLICAS, CYBERHOST_MAX_QUEUE, CYBERHOST_API_KEY_FILE.

Run: ``serve run deploy.ray.app:app`` (or see deploy/ray/run_local.py).
"""

import asyncio
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from ray import serve

JOBS_DIR = os.environ.get(
    "CYBERHOST_JOBS_DIR", os.path.join(tempfile.gettempdir(), "cyberhost-ray-jobs")
)
WEIGHTS = os.environ.get("CYBERHOST_WEIGHTS", "tiny")
BACKEND = os.environ.get("CYBERHOST_BACKEND", "cpu")
NUM_GPUS = float(os.environ.get("CYBERHOST_NUM_GPUS", "1"))
MIN_REPLICAS = int(os.environ.get("CYBERHOST_MIN_REPLICAS", "1"))
MAX_REPLICAS = int(os.environ.get("CYBERHOST_MAX_REPLICAS", "4"))
MAX_QUEUE = int(os.environ.get("CYBERHOST_MAX_QUEUE", "64"))
MAX_IMAGE_BYTES = int(os.environ.get("CYBERHOST_MAX_IMAGE_BYTES", str(20 << 20)))
MAX_AUDIO_BYTES = int(os.environ.get("CYBERHOST_MAX_AUDIO_BYTES", str(64 << 20)))
MAX_POSE_BYTES = int(os.environ.get("CYBERHOST_MAX_POSE_BYTES", str(1 << 20)))
MAX_FIELD_BYTES = 256
KNOBS = ("seed", "steps", "guidance", "size", "hand_clarity")
PARTS = "image, audio, pose, seed, steps, guidance, size, hand_clarity"
FINAL = ("succeeded", "failed", "cancelled")


def job_dir(jid):
    return os.path.join(JOBS_DIR, jid)


def save(d, rec):
    """job.json, atomically (temporary file + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=".job-", suffix=".json", dir=d)
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(d, "job.json"))


def load(jid):
    try:
        with open(os.path.join(job_dir(jid), "job.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def error(status, message, retry_after=None):
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def parse_knobs(fields):
    """The `generate` flags of the same names; messages as clap words them."""
    out = {"seed": 0, "steps": None, "guidance": None, "size": None, "hand_clarity": None}
    for name, v in fields.items():
        v = v.strip()
        flag = "--" + name.replace("_", "-")
        meta = flag.upper().lstrip("-").replace("-", "_")
        try:
            if name in ("seed", "steps"):
                if not re.fullmatch(r"\d+", v):
                    raise ValueError("invalid digit found in string")
                out[name] = int(v)
            elif name in ("guidance", "hand_clarity"):
                out[name] = float(v)
            elif name == "size":
                m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", v)
                if not m:
                    raise ValueError(f"`{v}` is not WxH, e.g. 512x512")
                out[name] = [int(m.group(1)), int(m.group(2))]
        except ValueError as e:
            raise ValueError(f"invalid value '{v}' for '{flag} <{meta}>': {e}")
    return out


@serve.deployment(
    ray_actor_options={"num_gpus": NUM_GPUS if BACKEND == "cuda" else 0},
    autoscaling_config={
        "min_replicas": MIN_REPLICAS,
        "max_replicas": MAX_REPLICAS,
        "target_ongoing_requests": 1,
    },
    max_ongoing_requests=1,
)
class Generator:
    """One model per replica (per GPU); runs one job at a time from shared storage."""

    def __init__(self):
        import cyberhost

        self.pipe = cyberhost.Pipeline(WEIGHTS, backend=BACKEND)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, jid):
        d = job_dir(jid)
        rec = load(jid)
        if rec is None or rec["state"] in FINAL:
            return rec and rec["state"]
        if os.path.exists(os.path.join(d, "cancel")):
            rec.update(state="cancelled", finished=time.time())
            with open(os.path.join(d, "events.jsonl"), "w") as f:
                f.write(json.dumps({"event": "cancelled", "t": 0.0}) + "\n")
            save(d, rec)
            return "cancelled"
        rec.update(state="running", started=time.time(), replica=self.name, step=0, steps=0,
                   attempts=rec.get("attempts", 0) + 1, error=None)
        save(d, rec)
        events = open(os.path.join(d, "events.jsonl"), "w")
        cancel_file = os.path.join(d, "cancel")

        class Cancelled(Exception):
            pass

        def on_progress(e):
            events.write(json.dumps(e) + "\n")
            events.flush()
            if e["event"] == "clip":
                rec.update(clip=e["clip"], clips=e["clips"])
            if e["event"] == "step":
                rec["step"] = rec.get("step", 0) + 1
                rec["steps"] = rec.get("clips", 1) * e["steps"]
                save(d, rec)
            if os.path.exists(cancel_file):
                raise Cancelled()

        p = rec["params"]
        t0 = time.time()
        try:
            done = self.pipe.generate(
                image=os.path.join(d, "image"), audio=os.path.join(d, "audio.wav"),
                out=os.path.join(d, "result.mp4"), seed=p["seed"], steps=p["steps"],
                guidance=p["guidance"], size=tuple(p["size"]) if p["size"] else None,
                hand_clarity=p["hand_clarity"],
                pose=os.path.join(d, "pose.json") if p.get("pose") else None,
                on_progress=on_progress,
            )
            done["out"] = f"/v1/jobs/{jid}/result"
            final, ev = "succeeded", done
        except Cancelled:
            final, ev = "cancelled", {"event": "cancelled", "t": time.time() - t0}
        except Exception as e:  # noqa: BLE001 - reported to the client as the job's error
            final, ev = "failed", {"event": "error", "message": str(e), "t": time.time() - t0}
            rec["error"] = str(e)
        events.write(json.dumps(ev) + "\n")
        events.close()
        rec.update(state=final, finished=time.time())
        save(d, rec)
        return final


app_api = FastAPI(title="cyberhost on Ray Serve")


@serve.deployment(num_replicas=1)
@serve.ingress(app_api)
class JobsApi:
    def __init__(self, generator):
        self.gen = generator
        self.keys = None
        kf = os.environ.get("CYBERHOST_API_KEY_FILE")
        if kf:
            with open(kf) as f:
                self.keys = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        os.makedirs(os.path.join(JOBS_DIR, ".incoming"), exist_ok=True)
        self.tasks = {}
        # Resume: queued and interrupted jobs are dispatched again, in submission order.
        recs = [load(n) for n in os.listdir(JOBS_DIR) if not n.startswith(".")]
        for rec in sorted((r for r in recs if r), key=lambda r: r["created"]):
            if rec["state"] in ("queued", "running"):
                rec["state"] = "queued"
                save(job_dir(rec["id"]), rec)
                self._dispatch(rec["id"])

    def _dispatch(self, jid):
        self.tasks[jid] = self.gen.run.remote(jid)

    def _queued(self):
        """Jobs accepted and not yet started (their records on shared storage say so)."""
        n = 0
        for jid in list(self.tasks):
            rec = load(jid)
            if rec is None or rec["state"] in FINAL:
                del self.tasks[jid]
            elif rec["state"] == "queued":
                n += 1
        return n

    def _auth(self, request):
        if self.keys is None:
            return None
        h = request.headers
        given = h.get("authorization", "")
        given = given[7:] if given.startswith("Bearer ") else h.get("x-api-key") or request.query_params.get("api_key")
        if not given:
            return error(401, "missing API key: send `Authorization: Bearer KEY` (or `X-API-Key: KEY`, or `?api_key=KEY`)")
        if given.strip() not in self.keys:
            return error(401, "wrong API key: use one of the keys in the server's --api-key-file")
        return None

    def _status(self, rec):
        jid = rec["id"]
        return {
            "id": jid, "state": rec["state"], "step": rec.get("step", 0), "steps": rec.get("steps", 0),
            "clip": rec.get("clip", 0), "clips": rec.get("clips", 0), "attempts": rec.get("attempts", 0),
            "created": rec["created"], "started": rec.get("started"), "finished": rec.get("finished"),
            "error": rec.get("error"), "params": rec["params"], "replica": rec.get("replica"),
            "urls": {"status": f"/v1/jobs/{jid}", "events": f"/v1/jobs/{jid}/events",
                     "result": f"/v1/jobs/{jid}/result"},
        }

    @app_api.get("/healthz")
    def healthz(self):
        return "ok"

    @app_api.get("/readyz")
    def readyz(self):
        return "ready"

    @app_api.post("/v1/jobs")
    async def submit(self, request: Request):
        denied = self._auth(request)
        if denied:
            return denied
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(400, f"send multipart/form-data with the parts {PARTS}")
        limits = {"image": MAX_IMAGE_BYTES, "audio": MAX_AUDIO_BYTES, "pose": MAX_POSE_BYTES}
        try:
            form = await request.form(max_part_size=max(limits.values()) + 1)
        except Exception as e:  # noqa: BLE001 - a malformed body
            return error(400, f"{e}; send a complete multipart/form-data body")
        jid = str(uuid.uuid4())
        inc = os.path.join(JOBS_DIR, ".incoming", jid)
        os.makedirs(inc)
        try:
            knobs, files = {}, {}
            for name, value in form.multi_items():
                if name in files or name in knobs:
                    return error(400, f"part `{name}` is given twice; send it once")
                if name in limits:
                    data = await value.read() if hasattr(value, "read") else value.encode()
                    if len(data) > limits[name]:
                        return error(413, f"part `{name}` is larger than the server's {limits[name]}-byte limit")
                    target = {"image": "image", "audio": "audio.wav", "pose": "pose.json"}[name]
                    with open(os.path.join(inc, target), "wb") as f:
                        f.write(data)
                    files[name] = True
                elif name in KNOBS:
                    if len(str(value)) > MAX_FIELD_BYTES:
                        return error(413, f"field `{name}` is longer than {MAX_FIELD_BYTES} bytes")
                    knobs[name] = str(value)
                else:
                    return error(400, f"unknown part `{name[:80]}`; the parts are {PARTS}")
            for need, what in (("image", "the reference photo (PNG or JPEG)"), ("audio", "the speech (WAV)")):
                if need not in files:
                    return error(400, f"missing part `{need}`: attach {what} as a file part named {need}")
            try:
                params = parse_knobs(knobs)
            except ValueError as e:
                return error(400, str(e))
            params["pose"] = "pose" in files
            if self._queued() >= MAX_QUEUE:
                return error(429, f"the queue is full ({MAX_QUEUE} jobs waiting)", retry_after=5)
            rec = {"id": jid, "state": "queued", "params": params, "created": time.time(), "attempts": 0}
            save(inc, rec)
            os.replace(inc, job_dir(jid))
        finally:
            shutil.rmtree(inc, ignore_errors=True)
        self._dispatch(jid)
        return JSONResponse(self._status(rec), status_code=202, headers={"Location": f"/v1/jobs/{jid}"})

    def _job(self, jid, request):
        denied = self._auth(request)
        if denied:
            return None, denied
        try:
            uuid.UUID(jid)
        except ValueError:
            return None, error(400, f"`{jid[:80]}` is not a job id; ids are the UUIDs returned by POST /v1/jobs")
        rec = load(jid)
        if rec is None:
            return None, error(404, f"no job {jid}")
        return rec, None

    @app_api.get("/v1/jobs/{jid}")
    def status(self, jid: str, request: Request):
        rec, err = self._job(jid, request)
        return err or self._status(rec)

    @app_api.delete("/v1/jobs/{jid}")
    def cancel(self, jid: str, request: Request):
        rec, err = self._job(jid, request)
        if err:
            return err
        if rec["state"] in FINAL:
            shutil.rmtree(job_dir(jid), ignore_errors=True)
            return JSONResponse(None, status_code=204)
        # The replica checks the marker before it starts and after every sampler step.
        open(os.path.join(job_dir(jid), "cancel"), "w").close()
        return JSONResponse(self._status(rec), status_code=202)

    @app_api.get("/v1/jobs/{jid}/events")
    async def events(self, jid: str, request: Request):
        rec, err = self._job(jid, request)
        if err:
            return err
        path = os.path.join(job_dir(jid), "events.jsonl")

        async def stream():
            i = 0
            while True:
                lines = []
                if os.path.exists(path):
                    with open(path) as f:
                        lines = [l for l in f.read().split("\n") if l.strip()]
                for line in lines[i:]:
                    yield f"id: {i}\ndata: {line}\n\n"
                    i += 1
                r = load(jid)
                if r is None or (r["state"] in FINAL and i >= len(lines)):
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app_api.get("/v1/jobs/{jid}/result")
    def result(self, jid: str, request: Request):
        rec, err = self._job(jid, request)
        if err:
            return err
        if rec["state"] != "succeeded":
            return error(409, f"job {jid} is {rec['state']}; its video is ready once it has succeeded")
        return FileResponse(os.path.join(job_dir(jid), "result.mp4"), media_type="video/mp4")


os.makedirs(JOBS_DIR, exist_ok=True)
app = JobsApi.bind(Generator.bind())
