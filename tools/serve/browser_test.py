#!/usr/bin/env python3
"""The `cyberhost serve` web page in a real browser (Debian's chromium, driven by Playwright).

Starts `cyberhost serve` on a free loopback port with the tiny model, opens the page, makes a
video with the bundled photo and a short generated speech file (64x64, 2 steps), follows the
live progress, checks the player and the download link, then checks that a bad knob shows the
server's message. Prints `N passed, M failed`; exit 0 only when all passed.

    python3 tools/serve/browser_test.py [path/to/cyberhost] [--screenshot out.png]

Needs: chromium (`apt-get install chromium`), `pip install playwright` (the Python package
only; the browser is the system one, no download), ffmpeg.
"""

import argparse
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave

CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]


def find_binary(arg):
    if arg:
        return arg
    for p in ["target/release/cyberhost", "target/debug/cyberhost"]:
        if os.path.exists(p):
            return p
    sys.exit("no cyberhost binary: build it (`cargo build --release -p cyberhost`) or pass its path")


def write_wav(path, seconds=0.5, rate=16000):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(rate * seconds)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(12000 * math.sin(2 * math.pi * (180 + 60 * i / rate) * i / rate)))
                for i in range(n)
            )
        )


def start_server(binary, jobs_dir):
    proc = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--jobs-dir", jobs_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    base = line.strip().rsplit(" ", 1)[-1]
    if not base.startswith("http://127.0.0.1:"):
        proc.kill()
        sys.exit(f"the server printed no address: {line!r}")
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(base + "/readyz", timeout=5).status == 200:
                return proc, base
        except Exception:
            time.sleep(0.1)
    proc.kill()
    sys.exit("the server never got ready")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?")
    ap.add_argument("--screenshot", help="save a screenshot of the finished page here")
    ap.add_argument("--chromium", default=next((c for c in CHROMIUM_CANDIDATES if os.path.exists(c)), None))
    a = ap.parse_args()
    if not a.chromium:
        sys.exit("no chromium found; apt-get install chromium")
    from playwright.sync_api import sync_playwright

    binary = find_binary(a.binary)
    tmp = tempfile.mkdtemp(prefix="cyberhost-browser-")
    speech = os.path.join(tmp, "speech.wav")
    write_wav(speech)
    proc, base = start_server(binary, os.path.join(tmp, "jobs"))
    passed, failed = 0, 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok: {name}")
        else:
            failed += 1
            print(f"FAILED: {name} {detail}")

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=a.chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(base + "/")
            check("page title", "cyberhost" in page.title())

            # A video from the bundled photo and our short speech.
            page.set_input_files("#audio", speech)
            page.fill("#size", "64x64")
            page.fill("#steps", "2")
            page.fill("#seed", "7")
            page.click("#go")
            page.wait_for_function(
                "['succeeded','failed','cancelled'].includes(document.getElementById('state').textContent)",
                timeout=180_000,
            )
            state = page.text_content("#state")
            check("job succeeded", state == "succeeded", f"state={state!r} error={page.text_content('#error')!r}")
            log = page.text_content("#log")
            check("live progress events", '"event":"step"' in log and '"event":"done"' in log, log[:300])
            bar = page.eval_on_selector("#bar", "b => [b.value, b.max]")
            check("progress bar full", bar[0] == bar[1] and bar[1] >= 1, str(bar))
            check("player visible", page.is_visible("#video"))
            # The player loads the MP4 (metadata) when the browser has the codecs; the file is
            # served as video/mp4 either way.
            meta = page.evaluate(
                """() => new Promise(res => {
                    const v = document.getElementById('video');
                    if (v.readyState >= 1) return res(v.duration);
                    v.addEventListener('loadedmetadata', () => res(v.duration));
                    v.addEventListener('error', () => res(-1));
                    setTimeout(() => res(-2), 15000);
                })"""
            )
            href = page.get_attribute("#download", "href")
            resp = page.request.get(base + href if href.startswith("/") else href)
            check("download link serves video/mp4", resp.status == 200 and resp.headers.get("content-type") == "video/mp4")
            body = resp.body()
            check("download is an MP4", body[4:8] == b"ftyp", repr(body[:12]))
            if meta == -1:
                print("note: this chromium cannot decode H.264/AAC; the player's metadata was not checked")
            else:
                check("player loaded the video", isinstance(meta, (int, float)) and meta > 0.3, str(meta))
            if a.screenshot:
                page.screenshot(path=a.screenshot, full_page=True)

            # A bad knob shows the server's (the CLI's) message.
            page.fill("#size", "63x64")
            page.click("#go")
            page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=60_000)
            err = page.text_content("#error")
            check("bad size shows the CLI message", "400" in err and "--size 63x64" in err, err)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
