"""pytest suite of the `cyberhost` Python binding (tiny model, 64x64, 2 steps)."""

import json
import math
import struct
import subprocess
import threading
import time
import wave

import pytest

import cyberhost

SMALL = dict(size="64x64", steps=2)


@pytest.fixture(scope="module")
def pipe():
    return cyberhost.Pipeline("tiny", backend="cpu")


@pytest.fixture()
def speech(tmp_path):
    """0.5 s of a chirp, 16 kHz mono."""
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(12000 * math.sin(2 * math.pi * (180 + 60 * i / 16000) * i / 16000)))
                for i in range(8000)
            )
        )
    return path


def streams(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    return sorted(s["codec_type"] for s in json.loads(out.stdout)["streams"])


def test_generate_writes_a_playable_mp4_and_reports_progress(pipe, speech, tmp_path):
    events = []
    out = tmp_path / "a.mp4"
    done = pipe.generate(audio=speech, out=out, seed=5, on_progress=events.append, **SMALL)
    assert streams(out) == ["audio", "video"]
    assert done["event"] == "done" and done["frames"] == 6 and done["fps"] == 12.0
    assert done["out"] == str(out)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "stage" and kinds.count("step") == 2 and "clip" in kinds
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2] and all(s["steps"] == 2 for s in steps)


def test_size_as_a_tuple_and_the_bundled_inputs(pipe, tmp_path):
    out = tmp_path / "b.mp4"
    done = pipe.generate(out=str(out), size=(64, 64), steps=1)
    assert out.exists() and done["audio_seconds"] > 2.0


def test_bad_inputs_raise_valueerror_with_the_cli_message(pipe, speech, tmp_path):
    out = tmp_path / "c.mp4"
    with pytest.raises(ValueError, match=r"--size 63x64: width and height must be positive multiples"):
        pipe.generate(audio=speech, out=out, size="63x64", steps=2)
    with pytest.raises(ValueError, match=r"--steps 0: use 1\.\.="):
        pipe.generate(audio=speech, out=out, size="64x64", steps=0)
    with pytest.raises(ValueError, match=r"--hand-clarity 2: use a score in \[0, 1\]"):
        pipe.generate(audio=speech, out=out, hand_clarity=2.0, **SMALL)
    with pytest.raises(ValueError, match=r"cannot open audio file"):
        pipe.generate(audio=tmp_path / "missing.wav", out=out, **SMALL)
    with pytest.raises(ValueError, match=r"is not WxH"):
        pipe.generate(audio=speech, out=out, size="64")
    with pytest.raises(ValueError, match=r"output directory .* does not exist"):
        pipe.generate(audio=speech, out=tmp_path / "nowhere" / "x.mp4", **SMALL)
    assert not out.exists()
    with pytest.raises(ValueError, match=r"backend=\"tpu\""):
        cyberhost.Pipeline("tiny", backend="tpu")
    with pytest.raises(ValueError, match=r"no `vae/` folder"):
        cyberhost.Pipeline(str(tmp_path), backend="cpu")


def test_a_callback_exception_stops_the_run_and_propagates(pipe, speech, tmp_path):
    seen = []

    def cb(e):
        seen.append(e["event"])
        if e["event"] == "step":
            raise KeyError("stop here")

    out = tmp_path / "d.mp4"
    with pytest.raises(KeyError, match="stop here"):
        pipe.generate(audio=speech, out=out, size="64x64", steps=50, on_progress=cb)
    assert seen.count("step") == 1, "stopped at the next step"
    assert not out.exists()


def test_generate_releases_the_gil(pipe, speech, tmp_path):
    ticks = []
    stop = threading.Event()

    def counter():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=counter)
    t.start()
    t0 = time.perf_counter()
    pipe.generate(audio=speech, out=tmp_path / "e.mp4", size="64x64", steps=8)
    t1 = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if t0 < x < t1]
    # With the GIL held for the whole run the thread could not tick at all in between.
    assert len(during) > 10, f"{len(during)} ticks in {t1 - t0:.2f} s"
    assert pipe is not None and "tiny" in repr(pipe)
