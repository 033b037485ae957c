#!/usr/bin/env python3
"""Time one CFG step's denoising UNet of a cyberhost preset in PyTorch (eager and torch.compile)
on the same shapes as `cyberhost bench`, and print the ratio to a `cyberhost bench --json` file.

    cyberhost make-weights --preset paper --out paper-weights
    cyberhost bench --preset paper --backend cuda --json > ours.json
    python benches/compare/compare_unet_step.py --weights paper-weights --ours ours.json

The model is diffusers' UNetMotionModel built from `<weights>/denoising_unet/config.json` (the
diffusers layout `cyberhost make-weights` writes), weights from its safetensors file when they
load, else random (timing does not depend on values). One CFG step = one forward on a batch of 2
(cond + uncond) clips of M+F latent frames of (H/8)x(W/8), with per-frame audio context tokens
(2*(M+F), K_a, D_ctx), in bf16. CyberHost's extras (reference K/V in self-attention, Region
Codebook Attention, pose/clarity residuals, fused CFG+DDIM) are not in stock diffusers, so
PyTorch does a little less work per step than cyberhost: see benches/compare/README.md.

Not part of CI (needs a GPU); CI only byte-compiles it.
"""

import argparse
import json
import os
import statistics
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True,
                   help="checkpoint dir from `cyberhost make-weights --preset tiny|paper --out DIR`")
    p.add_argument("--ours", help="`cyberhost bench --json` output of the same preset and size, for the ratio")
    p.add_argument("--size", help="WxH (default: the checkpoint's, from cyberhost/config.json)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per mode (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per mode (default 3; compile adds its own)")
    p.add_argument("--modes", default="eager,compile",
                   help="comma list of eager, compile (default both)")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke test only)")
    p.add_argument("--random-weights", action="store_true", help="skip loading the safetensors weights")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p.parse_args(argv)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def geometry(weights, size):
    """(width, height, frames F, motion M, tokens K_a, context dim) of the checkpoint."""
    cyber = read_json(os.path.join(weights, "cyberhost", "config.json"))
    unet = read_json(os.path.join(weights, "denoising_unet", "config.json"))
    pipe = cyber["pipeline"]
    width, height = pipe.get("width"), pipe.get("height")
    if size:
        w, h = size.lower().split("x")
        width, height = int(w), int(h)
    proj = cyber["audio_proj"]
    ctx_dim = proj["context_dim"]
    if unet.get("cross_attention_dim") not in (None, ctx_dim):
        sys.exit(f"denoising_unet cross_attention_dim {unet['cross_attention_dim']} != audio_proj context_dim {ctx_dim}")
    return {
        "width": width,
        "height": height,
        "frames": pipe["frames_per_clip"],
        "motion": pipe["motion_frames"],
        "tokens": proj["num_tokens"],
        "context_dim": ctx_dim,
        "in_channels": unet.get("in_channels", 4),
    }


def build_unet(weights, dtype, device, random_weights):
    import torch
    from diffusers import UNetMotionModel

    folder = os.path.join(weights, "denoising_unet")
    config = read_json(os.path.join(folder, "config.json"))
    unet = UNetMotionModel.from_config(config)
    source = "random init"
    if not random_weights:
        path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
        try:
            from safetensors.torch import load_file

            missing, unexpected = unet.load_state_dict(load_file(path), strict=False)
            source = f"{path} ({len(missing)} missing, {len(unexpected)} unexpected keys)"
        except Exception as e:  # timing does not depend on the values
            source = f"random init ({path}: {e})"
    unet = unet.to(device=device, dtype=dtype).eval()
    return unet, source


def time_mode(fn, steps, warmup, device):
    """Per-step milliseconds: CUDA events on a GPU, perf_counter on the CPU."""
    import time

    import torch

    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        times = []
        for _ in range(steps):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return times
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return times


def summary(times):
    return {
        "mean_ms": statistics.fmean(times),
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "steps": len(times),
    }


def ours_ms(ours, g):
    """cyberhost's median step in ms, with a note when its shapes differ from ours."""
    if ours is None:
        return None, None
    step = ours.get("step_seconds")
    if not step:
        return None, f"{ours.get('device', '?')}: no step time (emulator or CPU run?)"
    note = None
    want = (g["width"], g["height"], g["motion"] + g["frames"])
    got = (ours.get("width"), ours.get("height"), ours.get("frames"))
    if want != got:
        note = f"shape mismatch: cyberhost ran {got}, PyTorch {want} (width, height, frames)"
    return 1e3 * step["median"], note


def main(argv=None):
    a = parse_args(argv)
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to PyTorch; use --device cpu for a smoke test")
    g = geometry(a.weights, a.size)
    if g["width"] % 64 or g["height"] % 64:
        print(f"note: {g['width']}x{g['height']} is not a multiple of 64", file=sys.stderr)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True

    unet, source = build_unet(a.weights, dtype, a.device, a.random_weights)
    slots = g["motion"] + g["frames"]
    lh, lw = g["height"] // 8, g["width"] // 8
    gen = torch.Generator(device="cpu").manual_seed(0)
    sample = torch.randn(2, g["in_channels"], slots, lh, lw, generator=gen).to(a.device, dtype)
    context = torch.randn(2 * slots, g["tokens"], g["context_dim"], generator=gen).to(a.device, dtype)
    timestep = torch.tensor([500.0], device=a.device)

    def step(model):
        def run():
            with torch.inference_mode():
                return model(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]
        return run

    results = {}
    for mode in [m.strip() for m in a.modes.split(",") if m.strip()]:
        if mode == "eager":
            fn = step(unet)
        elif mode == "compile":
            fn = step(torch.compile(unet, mode=None if a.compile_mode == "default" else a.compile_mode))
            fn()  # compile outside the warm-up count
        else:
            sys.exit(f"--modes: unknown mode {mode!r} (eager, compile)")
        results[mode] = summary(time_mode(fn, a.steps, a.warmup, a.device))

    ours = read_json(a.ours) if a.ours else None
    ours_median, note = ours_ms(ours, g)
    out = {
        "weights": a.weights,
        "weights_source": source,
        "device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": a.dtype,
        "compile_mode": a.compile_mode,
        "shapes": {
            "sample": list(sample.shape),
            "encoder_hidden_states": list(context.shape),
        },
        "pytorch": results,
        "cyberhost_median_ms": ours_median,
        "cyberhost_device": ours.get("device") if ours else None,
        "ratio_cyberhost_over_pytorch": {
            m: ours_median / r["median_ms"] for m, r in results.items()
        } if ours_median else None,
        "note": note,
    }
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['device']}, torch {out['torch']}, {a.dtype}; sample {out['shapes']['sample']}, "
          f"context {out['shapes']['encoder_hidden_states']}; weights: {source}")
    print(f"{'':<22}{'median ms':>10}{'mean ms':>10}{'min ms':>10}{'cyberhost / this':>18}")
    for m, r in results.items():
        ratio = f"{ours_median / r['median_ms']:.2f}x" if ours_median else "-"
        label = f"pytorch {m}" + (f" ({a.compile_mode})" if m == "compile" else "")
        print(f"{label:<22}{r['median_ms']:>10.3f}{r['mean_ms']:>10.3f}{r['min_ms']:>10.3f}{ratio:>18}")
    if ours_median:
        print(f"{'cyberhost':<22}{ours_median:>10.3f}{'':>10}{'':>10}{'1.00x':>18}  ({out['cyberhost_device']})")
        print("ratio < 1: cyberhost is faster (its step also runs reference K/V, RCA and the fused CFG+DDIM update)")
    if note:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
