"""Real-time tracking on 2 cores (issue 16): frames/s end to end and per stage, quiet and beside one busy process.

    python -m benchmarks.track_speed --out out/bench/track_speed [--frames 100] [--sizes 640x480,1280x720]
    (or python benchmarks/track_speed.py ...: the same)

For each input size a synthetic clip is rendered once (the benchmark's own face renderer, written as mp4 with
mp4v) and tracked with the shipped demo LDEQ + RwR (k = 2) through the whole pipeline: decode (OpenCV), the box
(the detector on the first frame, then the landmark extent of the previous frame, appendix A), crop and normalise,
solve, map the landmarks back to frame pixels, write them (.npy stream). Backends:

- `torch, 2 threads`: torch's old default on this machine;
- `torch, thread rule`: `ldeq.core.threads.set_threads(batch=1)`, i.e. 1 thread;
- `onnxruntime, 1 thread`: the `ldeq-export` graphs through `ldeq.video.onnx_track.OnnxLDEQ`.

Each is run on a quiet machine and with one competing busy process (a bounded pure-Python busy loop that this script
starts and stops). Targets (issue 16): with a competitor >= 50% of the quiet frames/s; >= 60 frames/s quiet and
>= 30 with a competitor. Results: track_speed.csv / .md and track_speed.json in --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ldeq.core.assets import demo_checkpoints
from ldeq.video.detect import FaceDetector
from ldeq.video.onnx_track import OnnxLDEQ
from ldeq.core.preprocess import bbox_to_affine, crop_image, normalize_image, crop_norm_to_frame
from ldeq.core.progress import tqdm_bar
from ldeq.faces.synth import sample_clip, render_clip
from ldeq.core.threads import set_threads, idle_cores
from ldeq.data.videoio import BoxTracking, NpyStreamWriter, read_frames
from ldeq.video.boxes import BoxPolicy, bootstrap

STAGES = ('decode', 'box', 'crop', 'solve', 'map_back', 'write')
DEMO = demo_checkpoints()['ldeq']


def render_video(path: Path, size: tuple[int, int], n_frames: int, seed: int = 3) -> np.ndarray:
    "Render a synthetic easy clip at (W, H) to `path` (mp4v) unless it exists; returns its true landmark boxes."
    W, H = size
    spec = sample_clip(np.random.default_rng(seed), f'bench_{W}x{H}', hard=False, n_frames=n_frames, image_size=(H, W))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), spec.fps, (W, H))
        for r in tqdm_bar(render_clip(spec), total=n_frames, desc=f'render {W}x{H}'):
            wr.write(cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR))
        wr.release()
    return spec.bboxes


class TorchSolver:
    "The demo LDEQ through `LDEQ.forward`: first frames from zeros, then RwR steps from z*ₙ₋₁."
    def __init__(self, threads: int | None):
        import torch
        from ldeq.models.checkpoint import load_model
        from ldeq.video.methods import RwR
        self.torch, self.model = torch, load_model(DEMO)
        self.solver = RwR(k=2).solver
        self.threads = set_threads(threads, batch=1)
        self.size = self.model.cfg.image_size

    def crop(self, frame, box):
        M = bbox_to_affine(box, 1.2, self.size)
        return normalize_image(crop_image(frame, M, self.size)), M

    def solve(self, x, z_prev):
        with self.torch.no_grad():
            out = self.model(x) if z_prev is None else self.model(x, z0=z_prev, solver=self.solver, extra_step=False)   # as ldeq.video.tracking's warm frames
        return out.landmarks[0].numpy(), out.z_star


class OrtSolver:
    "The `ldeq-export` graphs on onnxruntime (1 thread)."
    def __init__(self, onnx_path: Path, threads: int = 1):
        from ldeq.core.preprocess import normalize_array
        self.m, self.threads, self.norm = OnnxLDEQ(onnx_path, threads), threads, normalize_array
        self.size = self.m.size

    def crop(self, frame, box):
        M = bbox_to_affine(box, self.m.scale, self.size)
        return self.norm(crop_image(frame, M, self.size)), M

    def solve(self, x, z_prev):
        lm, z = (self.m.first.run(None, {'crop': x}) if z_prev is None else self.m.step.run(None, {'crop': x, 'z_prev': z_prev}))
        return lm[0], z


def run_pipeline(video: Path, solver, detector: FaceDetector, out_npy: Path, tracking=BoxTracking()) -> dict:
    "Track `video` end to end with per-stage wall times; returns seconds per stage, frames, detections."
    t = dict.fromkeys(STAGES, 0.0)
    policy, z = BoxPolicy(tracking, detector=detector, name=str(video)), None   # the trackers' box policy (appendix A)
    n = redetect = 0
    writer = NpyStreamWriter(out_npy)
    frames = read_frames(video)

    def predict(box, z_prev):
        "Crop, solve (from zeros when `z_prev` is None), map back; each stage timed."
        t0 = time.perf_counter(); x, M = solver.crop(frame, box); t['crop'] += time.perf_counter() - t0
        t0 = time.perf_counter(); lmc, z_new = solver.solve(x, z_prev); t['solve'] += time.perf_counter() - t0
        t0 = time.perf_counter(); lm = crop_norm_to_frame(lmc, M, solver.size); t['map_back'] += time.perf_counter() - t0
        return lm, z_new

    t_all = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        frame = next(frames, None)
        t['decode'] += time.perf_counter() - t0
        if frame is None: break
        t0 = time.perf_counter()
        box, boot = policy.propose(n, frame)         # a bootstrap detects again (the detector's time counts as 'box')
        redetect += boot
        t['box'] += time.perf_counter() - t0
        if boot: (lm, z), box = bootstrap(policy, lambda b: predict(b, None), frame, box)
        else: lm, z = predict(box, z)
        policy.update(lm, box)
        t0 = time.perf_counter(); writer.append(lm); t['write'] += time.perf_counter() - t0
        n += 1
    writer.close()
    return dict(frames=n, seconds=time.perf_counter() - t_all, detections=redetect, **{f's_{k}': v for k, v in t.items()})


class Competitor:
    "One busy process (a bounded pure-Python loop), started on enter and stopped on exit."
    def __init__(self, seconds: float = 600.0): self.seconds, self.p = seconds, None
    def __enter__(self):
        code = f'import time\nt = time.time() + {self.seconds}\nwhile time.time() < t: pass'
        self.p = subprocess.Popen([sys.executable, '-c', code])
        time.sleep(0.5)
        return self
    def __exit__(self, *exc):
        self.p.kill(); self.p.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='out/bench/track_speed')
    ap.add_argument('--frames', type=int, default=100)
    ap.add_argument('--sizes', default='640x480,1280x720')
    ap.add_argument('--backends', default='torch2,torch-rule,onnx')
    a = ap.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    idle = idle_cores(0.5)
    if idle is not None and idle < (os.cpu_count() or 1) - 0.5:
        print(f'warning: only {idle:.1f} of {os.cpu_count()} cores idle; the quiet numbers will be low', file=sys.stderr)
    onnx_path = out / 'demo_ldeq.onnx'
    if 'onnx' in a.backends and not onnx_path.exists():
        from ldeq.models.checkpoint import load_model
        from ldeq.video.export import export_onnx
        export_onnx(load_model(DEMO), onnx_path)
    detector = FaceDetector()
    rows = []
    sizes = [tuple(int(v) for v in s.split('x')) for s in a.sizes.split(',')]
    for W, H in sizes:
        video = out / f'clip_{W}x{H}.mp4'
        render_video(video, (W, H), a.frames)
        for backend in a.backends.split(','):
            make = {'torch2': lambda: TorchSolver(2), 'torch-rule': lambda: TorchSolver(None),
                    'onnx': lambda: OrtSolver(onnx_path, 1)}[backend]
            solver = make()
            run_pipeline(video, solver, detector, out / 'warmup.npy')          # warm-up: caches, allocator, decoder
            for load in ('quiet', 'one busy process'):
                if load == 'quiet': r = run_pipeline(video, solver, detector, out / 'lm.npy')
                else:
                    with Competitor(): r = run_pipeline(video, solver, detector, out / 'lm.npy')
                r.update(size=f'{W}x{H}', backend=backend, threads=solver.threads, load=load, fps=r['frames'] / r['seconds'])
                rows.append(r)
                print(f"{W}x{H} {backend:10s} {load:16s} {r['fps']:6.1f} frames/s  "
                      + ' '.join(f"{k}={1e3 * r['s_' + k] / r['frames']:.1f}ms" for k in STAGES), flush=True)
    df = pd.DataFrame(rows)
    for k in STAGES: df[f'ms_{k}'] = 1e3 * df[f's_{k}'] / df['frames']
    q = df[df.load == 'quiet'].set_index(['size', 'backend']).fps
    df['fps_vs_quiet'] = [r.fps / q[(r['size'], r.backend)] for _, r in df.iterrows()]
    cols = ['size', 'backend', 'threads', 'load', 'fps', 'fps_vs_quiet'] + [f'ms_{k}' for k in STAGES] + ['detections']
    df[cols].to_csv(out / 'track_speed.csv', index=False)
    (out / 'track_speed.md').write_text(df[cols].to_markdown(index=False, floatfmt='.2f') + '\n')
    (out / 'track_speed.json').write_text(json.dumps(dict(rows=rows, idle_cores_at_start=idle), indent=1, default=float))
    print(df[cols].to_markdown(index=False, floatfmt='.2f'))
    print(f'results in {out}/track_speed.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
