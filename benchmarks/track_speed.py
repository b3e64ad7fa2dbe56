"""Real-time tracking on one core (issues 16, 27): frames/s end to end and per stage, quiet and beside one busy process.

    python -m benchmarks.track_speed --out out/bench/track_speed [--frames 100] [--sizes 640x480,1280x720] [--backends ...]
    python -m benchmarks.track_speed --levers --out out/bench/track_speed [--frames 100]    # the levers side by side
    (or python benchmarks/track_speed.py ...: the same)

The CPU's capability comes first (`ldeq.core.threads.cpu_capability`: torch's kernel level, the /proc/cpuinfo flags
AVX2 / AVX512 / VNNI / BF16 / AMX, onnxruntime's CPU device). For each input size a synthetic clip is rendered once
(mp4v) and tracked with the shipped demo LDEQ + RwR through the whole pipeline: decode (OpenCV), the box (the
detector on the first frame, then the landmark extent of the previous frame, appendix A), crop and normalise, solve,
map the landmarks back to frame pixels, write them (.npy stream). Backends (`BACKENDS`):

- `torch2`: PyTorch fp32, 2 threads (torch's old default on a 2-core machine);
- `torch-rule`: PyTorch fp32, `ldeq.core.threads.set_threads(batch=1)`, i.e. 1 thread;
- `torch-bf16`: the same under bf16 autocast, only where the CPU has AVX512-BF16 or AMX-BF16 (on AVX2 a bf16
  convolution is ~75x slower than fp32, so it is skipped there);
- `onnx`: the `ldeq-export` fp32 graphs on onnxruntime, 1 thread (`ldeq.video.onnx_track.OnnxLDEQ`);
- `onnx-int8`: the `ldeq-export --int8` graphs (static INT8 convolutions but the stem, the cell's 1x1 input and output
  and hourglass level 2, which add the most flicker), 1 thread.

Each runs quiet and with one competing busy process (a bounded pure-Python loop this script starts and stops).
Targets (issue 27): end to end on one core >= 60 frames/s quiet and >= 45 with a competitor on AVX2 machines,
>= 100 quiet where VNNI exists. Results: track_speed.csv / .md / .json in --out.

`--levers` runs each lever of issue 27 against its baseline on one 640x480 clip of `--frames` frames, quiet and
busy: fp32 vs INT8 (the default graphs, and every convolution quantised), onnxruntime's graph optimisation level,
I/O binding of the state between frames, 1 vs 2 threads (with and without spinning workers), RwR k = 1 vs 2, and on
the PyTorch path channels-last and bf16 (where the CPU has BF16). Results: track_levers.csv / .md / .json in --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.track_speed`
    import _launch; _launch.as_module(__file__)

import cv2
import numpy as np
import pandas as pd

from ldeq.core.assets import demo_checkpoints
from ldeq.core.preprocess import bbox_to_affine, crop_image, crop_norm_to_frame, normalize_array, normalize_image
from ldeq.core.progress import tqdm_bar
from ldeq.core.threads import cpu_capability, idle_cores, set_threads
from ldeq.data.videoio import BoxTracking, NpyStreamWriter, read_frames
from ldeq.faces.synth import render_clip, sample_clip
from ldeq.video.boxes import BoxPolicy, bootstrap
from ldeq.video.detect import FaceDetector
from ldeq.video.onnx_track import OnnxLDEQ, OrtOptions

from .common import cpu_model

STAGES = ('decode', 'box', 'crop', 'solve', 'map_back', 'write')
DEMO = demo_checkpoints()['ldeq']


@dataclass(frozen=True)
class Backend:
    "One way to run the solve: engine, precision, threads, and the settings measured side by side."
    name: str
    engine: str                      # 'torch' or 'onnx'
    precision: str = 'fp32'          # torch: 'fp32' or 'bf16' (autocast); onnx: 'fp32', 'int8' or 'int8-all' (every conv)
    threads: int | None = 1          # None: the thread rule, `set_threads(batch=1)`
    k: int = 2                       # RwR step: applications of f per frame
    level: str = 'all'               # onnxruntime graph optimisation level
    spinning: bool = True            # onnxruntime intra-op workers spin (threads > 1)
    bind: bool = False               # onnxruntime I/O binding: the state stays in two buffers reused across frames
    channels_last: bool = False      # torch: NHWC memory format

    @property
    def needs_bf16(self) -> bool: return self.engine == 'torch' and self.precision == 'bf16'


BACKENDS = {b.name: b for b in (Backend('torch2', 'torch', threads=2), Backend('torch-rule', 'torch', threads=None),
                                Backend('torch-bf16', 'torch', 'bf16', threads=None), Backend('onnx', 'onnx'),
                                Backend('onnx-int8', 'onnx', 'int8'))}


def levers() -> list[tuple[str, Backend, str]]:
    "Issue 27's levers: (lever, backend, its baseline's name); each backend runs quiet and busy on the same clip."
    on, o8, tr = BACKENDS['onnx'], BACKENDS['onnx-int8'], Backend('torch', 'torch')
    rows = [('precision', on, 'onnx'), ('precision', o8, 'onnx'), ('precision', replace(o8, name='onnx-int8-all', precision='int8-all'), 'onnx')]
    rows += [('graph optimisation', replace(b, name=f'{b.name} {lv}', level=lv), b.name) for b in (on, o8) for lv in ('basic', 'extended')]
    rows += [('I/O binding', replace(b, name=f'{b.name} bound', bind=True), b.name) for b in (on, o8)]
    rows += [('threads', replace(b, name=f'{b.name} 2 threads', threads=2), b.name) for b in (on, o8)]
    rows += [('threads', replace(b, name=f'{b.name} 2 threads no spin', threads=2, spinning=False), b.name) for b in (on, o8)]
    rows += [('RwR k', replace(b, name=f'{b.name} k=1', k=1), b.name) for b in (on, o8)]
    rows += [('PyTorch', tr, 'torch'), ('PyTorch', replace(tr, name='torch channels-last', channels_last=True), 'torch'),
             ('PyTorch', replace(tr, name='torch bf16', precision='bf16'), 'torch')]
    return rows


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


def onnx_graphs(out: Path, k: int, precision: str) -> Path:
    "The demo LDEQ's `ldeq-export` graphs (RwR step with `k`) in `out`, made once: 'fp32', 'int8' (`--int8`) or 'int8-all' (`--int8 --all-convs`)."
    fp32 = out / f'demo_ldeq_k{k}.onnx'
    if not fp32.exists():
        from ldeq.models.checkpoint import load_model
        from ldeq.video.export import export_onnx
        export_onnx(load_model(DEMO), fp32, k=k)
    if precision == 'fp32': return fp32
    if precision not in ('int8', 'int8-all'): raise ValueError(f"precision must be 'fp32', 'int8' or 'int8-all', got {precision!r}")
    from ldeq.video.export import Int8Config, quantize_export
    int8, cfg = out / f'demo_ldeq_k{k}.{precision}.onnx', Int8Config(fp32_convs=()) if precision == 'int8-all' else Int8Config()
    made = int8.exists() and OnnxLDEQ(int8).step.get_modelmeta().custom_metadata_map.get('ldeq.int8.fp32_convs')
    if made != json.dumps(list(cfg.fp32_convs)): quantize_export(fp32, int8, cfg)      # missing, or made by another recipe
    return int8


class TorchSolver:
    "The demo LDEQ through `LDEQ.forward`: first frames from zeros, then RwR steps from z*ₙ₋₁ (fp32 or bf16 autocast)."
    def __init__(self, b: Backend):
        import torch
        from ldeq.models.checkpoint import load_model
        from ldeq.video.methods import RwR
        self.torch, self.model, self.b = torch, load_model(DEMO), b
        self.mf = torch.channels_last if b.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.mf)
        self.solver = RwR(k=b.k).solver
        self.threads = set_threads(b.threads, batch=1)
        self.size = self.model.cfg.image_size

    def crop(self, frame, box):
        M = bbox_to_affine(box, 1.2, self.size)
        return normalize_image(crop_image(frame, M, self.size)).contiguous(memory_format=self.mf), M

    def solve(self, x, z_prev):
        torch = self.torch
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=self.b.precision == 'bf16'):
            out = self.model(x) if z_prev is None else self.model(x, z0=z_prev, solver=self.solver, extra_step=False)   # as ldeq.video.tracking's warm frames
        return out.landmarks[0].float().numpy(), out.z_star


class OrtSolver:
    "The `ldeq-export` graphs on onnxruntime; with `bind`, the state lives in two OrtValues swapped between frames."
    def __init__(self, b: Backend, out: Path):
        import onnxruntime as ort
        self.b, self.threads = b, b.threads
        self.m = OnnxLDEQ(onnx_graphs(out, b.k, b.precision), b.threads, OrtOptions(b.level, b.spinning))
        self.size = self.m.size
        if b.bind:
            shape = [1] + json.loads(self.m.step.get_modelmeta().custom_metadata_map['ldeq.z_shape'])
            self.io = self.m.step.io_binding()
            self.z = [ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32) for _ in range(2)]
            self.lm = ort.OrtValue.ortvalue_from_shape_and_type([1, self.m.n_landmarks, 2], np.float32)
            self.io.bind_ortvalue_output('landmarks', self.lm)

    def crop(self, frame, box):
        M = bbox_to_affine(box, self.m.scale, self.size)
        return normalize_array(crop_image(frame, M, self.size)), M

    def solve(self, x, z_prev):
        if z_prev is None:
            lm, z = self.m.first.run(None, {'crop': x})
            if self.b.bind: self.z[0].update_inplace(z); z = 0
            return lm[0], z
        if not self.b.bind:
            lm, z = self.m.step.run(None, {'crop': x, 'z_prev': z_prev})
            return lm[0], z
        self.io.bind_cpu_input('crop', x)                                  # z_prev: the index of the buffer holding the state
        self.io.bind_ortvalue_input('z_prev', self.z[z_prev]); self.io.bind_ortvalue_output('z', self.z[1 - z_prev])
        self.m.step.run_with_iobinding(self.io)
        return self.lm.numpy()[0], 1 - z_prev


def make_solver(b: Backend, out: Path):
    return TorchSolver(b) if b.engine == 'torch' else OrtSolver(b, out)


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
        if box is None: raise RuntimeError(f'{video}: no face found on frame {n} of the benchmark clip')
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


def measure(b: Backend, video: Path, detector: FaceDetector, out: Path, size: str) -> list[dict]:
    "A backend on one clip: a warm-up run, then quiet and beside one busy process."
    solver = make_solver(b, out)
    with tempfile.TemporaryDirectory() as d:
        run_pipeline(video, solver, detector, Path(d) / 'warmup.npy')          # warm-up: caches, allocator, decoder
        rows = []
        for load in ('quiet', 'one busy process'):
            if load == 'quiet': r = run_pipeline(video, solver, detector, Path(d) / 'lm.npy')
            else:
                with Competitor(): r = run_pipeline(video, solver, detector, Path(d) / 'lm.npy')
            r.update(size=size, backend=b.name, threads=solver.threads, load=load, fps=r['frames'] / r['seconds'], **{
                f'cfg_{k}': v for k, v in asdict(b).items() if k != 'name'})
            rows.append(r)
            print(f"{size} {b.name:28s} {load:16s} {r['fps']:6.1f} frames/s  "
                  + ' '.join(f"{k}={1e3 * r['s_' + k] / r['frames']:.2f}ms" for k in STAGES), flush=True)
    return rows


def per_frame_ms(df: pd.DataFrame) -> pd.DataFrame:
    for k in STAGES: df[f'ms_{k}'] = 1e3 * df[f's_{k}'] / df['frames']
    return df


def targets(df: pd.DataFrame, cap) -> list[str]:
    "Issue 27's targets, met or not, for each backend at each size."
    lines = []
    for (size, backend), g in df.groupby(['size', 'backend'], sort=False):
        q, b = (float(g[g.load == l].fps.iloc[0]) for l in ('quiet', 'one busy process'))
        quiet_t = 100 if cap.vnni else 60
        lines.append(f'- {size} {backend}: {q:.1f} frames/s quiet (target >= {quiet_t}{" with VNNI" if cap.vnni else ""}: '
                     f'{"met" if q >= quiet_t else "NOT met"}), {b:.1f} with one busy process (target >= 45: {"met" if b >= 45 else "NOT met"})')
    return lines


def write(df: pd.DataFrame, cols: list[str], out: Path, name: str, head: list[str], extra: dict) -> None:
    df[cols].to_csv(out / f'{name}.csv', index=False)
    md = '\n'.join(head) + '\n\n' + df[cols].to_markdown(index=False, floatfmt='.2f') + '\n'
    (out / f'{name}.md').write_text(md)
    (out / f'{name}.json').write_text(json.dumps(dict(rows=df.to_dict('records'), **extra), indent=1, default=float))
    print(md)
    print(f'results in {out}/{name}.md')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('--out', default='out/bench/track_speed')
    ap.add_argument('--frames', type=int, default=100, help='frames per clip (default 100)')
    ap.add_argument('--sizes', default='640x480,1280x720')
    ap.add_argument('--backends', default=','.join(BACKENDS), help=f'of {",".join(BACKENDS)} (default: all the CPU can run)')
    ap.add_argument('--levers', action='store_true', help="issue 27's levers side by side on one 640x480 clip")
    a = ap.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cap = cpu_capability(import_torch=True)
    print(f'CPU: {cpu_model()}, {os.cpu_count()} cores; {cap.summary()}', flush=True)
    idle = idle_cores(0.5)
    if idle is not None and idle < (os.cpu_count() or 1) - 0.5:
        print(f'warning: only {idle:.1f} of {os.cpu_count()} cores idle; the quiet numbers will be low', file=sys.stderr)
    head = [f'CPU: {cpu_model()}, {os.cpu_count()} cores; capability {cap.summary()}; '
            f'{idle if idle is None else round(idle, 1)} cores idle at start.']
    extra = dict(idle_cores_at_start=idle, cpu=cpu_model(), capability=dict(summary=cap.summary(), torch=cap.torch,
                 flags=sorted(cap.flags or ()), onnxruntime=cap.onnxruntime, vnni=cap.vnni, bf16=cap.bf16))
    detector = FaceDetector()
    if a.levers:
        frames = a.frames
        video = out / f'clip_640x480_{frames}.mp4'
        render_video(video, (640, 480), frames)
        plan = [(lv, b, base) for lv, b, base in levers() if not b.needs_bf16 or cap.bf16]
        if not cap.bf16: print('no AVX512-BF16 / AMX-BF16: the bf16 lever is skipped (a bf16 convolution is ~75x slower on AVX2)')
        rows = []
        for lv, b, base in plan:
            rows += [dict(r, lever=lv, baseline=base) for r in measure(b, video, detector, out, '640x480')]
        df = per_frame_ms(pd.DataFrame(rows))
        ref = df.set_index(['backend', 'load'])
        df['fps_vs_baseline'] = [r.fps / ref.loc[(r.baseline, r.load), 'fps'] for _, r in df.iterrows()]
        df['solve_vs_baseline'] = [r.ms_solve / ref.loc[(r.baseline, r.load), 'ms_solve'] for _, r in df.iterrows()]
        df = df.drop_duplicates(['backend', 'load'])
        cols = ['lever', 'backend', 'baseline', 'threads', 'load', 'fps', 'fps_vs_baseline', 'ms_solve', 'solve_vs_baseline', 'ms_crop', 'ms_decode']
        write(df, cols, out, 'track_levers', head + [f'One 640x480 clip of {frames} frames, end to end; ratios against the '
              'baseline backend of each lever (same load).'], extra)
        return 0
    names = [s.strip() for s in a.backends.split(',') if s.strip()]
    bad = [s for s in names if s not in BACKENDS]
    if bad: ap.error(f'--backends: unknown {bad}; choose from {",".join(BACKENDS)}')
    if not cap.bf16 and 'torch-bf16' in names:
        names.remove('torch-bf16'); print('no AVX512-BF16 / AMX-BF16: torch-bf16 skipped (a bf16 convolution is ~75x slower on AVX2)')
    rows = []
    for W, H in [tuple(int(v) for v in s.split('x')) for s in a.sizes.split(',')]:
        video = out / f'clip_{W}x{H}_{a.frames}.mp4'
        render_video(video, (W, H), a.frames)
        for name in names: rows += measure(BACKENDS[name], video, detector, out, f'{W}x{H}')
    df = per_frame_ms(pd.DataFrame(rows))
    q = df[df.load == 'quiet'].set_index(['size', 'backend']).fps
    df['fps_vs_quiet'] = [r.fps / q[(r['size'], r.backend)] for _, r in df.iterrows()]
    cols = ['size', 'backend', 'threads', 'load', 'fps', 'fps_vs_quiet'] + [f'ms_{k}' for k in STAGES] + ['detections']
    write(df, cols, out, 'track_speed', head + [''] + targets(df, cap), extra)
    return 0


if __name__ == '__main__':
    sys.exit(main())
