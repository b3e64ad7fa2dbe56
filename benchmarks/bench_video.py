"""run_all.py's `video` section: tracking throughput (frame-by-frame, RwR, RwR batched over videos) on synthetic
videos decoded into memory, and memory vs video length (RwR on generated streams, each in a fresh process:
`length_worker`, run through `python -m benchmarks.run_all --worker length`). Its clip helpers (`load_clips`,
`throughput`) also serve the `gpu` section and gpu_check's `video` part."""
from __future__ import annotations

import gc
import resource
import statistics
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ldeq.models.memory import reset_peak_rss, rss_status
from ldeq.models.model import LDEQ, LDEQConfig, model_cost

from .bench_context import DEFAULT_CHECKPOINT, SUBPROCESS_S, Context
from .common import MIB, fmt, malloc_tight, md_table, run_worker, yes_no

FRAME_OVERHEAD_S = 4e-3     # per-frame tracking cost outside the model (crop, normalisation, mapping back)
SYNTHETIC_VIDEOS_S = 180.0  # generating the synthetic video set when it is not cached yet
BATCH1_SLOWDOWN = 1.3       # batch-1 convolutions run this much slower than the batch-4 calibration (measured, small)
LENGTH_TOLERANCE_MIB = 8.0  # "does not grow": peak growth at the long length <= that at the short one + this


@dataclass
class Clip:
    "A synthetic video decoded into memory."
    name: str
    frames: list[np.ndarray]
    boxes: np.ndarray


class CycledBoxes:
    "A clip's boxes repeated to length n without materialising them (what `VideoSource.boxes` needs: len, [t])."
    def __init__(self, boxes: np.ndarray, n: int):
        self.boxes, self.n = np.asarray(boxes, dtype=np.float64), int(n)

    def __len__(self) -> int: return self.n

    def __getitem__(self, t: int) -> np.ndarray:
        if not 0 <= t < self.n: raise IndexError(f'box {t} of {self.n}')
        return self.boxes[t % len(self.boxes)]


def noisy_stream(frames: Sequence[np.ndarray], n: int, seed: int = 0) -> Iterator[np.ndarray]:
    "`n` frames cycling `frames`, each with a little uint8 noise (7 noise patterns, saturating add)."
    import cv2
    rng = np.random.default_rng(seed)
    bank = [rng.integers(0, 4, frames[0].shape, dtype=np.uint8) for _ in range(7)]
    for t in range(n): yield cv2.add(frames[t % len(frames)], bank[t % len(bank)])


def video_root(ctx: Context) -> Path:
    "`--video-root`, else the synthetic WFLW-V set (generated on first use by `ldeq.faces.synth.ensure_synthetic`)."
    if ctx.video_root is not None: return ctx.video_root
    from ldeq.faces.synth import ensure_synthetic
    return Path(ensure_synthetic(parts=('videos',), progress=ctx.progress).wflw_v)


def load_clips(root: Path, n_videos: int, n_frames: int) -> list[Clip]:
    "The first `n_frames` frames and boxes of the first `n_videos` videos (hard first, then easy) of a WFLW-V root."
    from ldeq.data.videoio import read_frames
    from ldeq.data.formats import wflwv_items
    items = wflwv_items(root, 'full')
    if len(items) < n_videos: raise ValueError(f'{root} has {len(items)} videos, the benchmark needs {n_videos}')
    clips = []
    for it in items[:n_videos]:
        frames = list(islice(read_frames(it.video), n_frames))
        boxes = np.load(it.bboxes, allow_pickle=False)[:len(frames)].astype(np.float64)
        if len(frames) < n_frames or len(boxes) < len(frames):
            raise ValueError(f'{it.video}: {len(frames)} frames / {len(boxes)} boxes, the benchmark needs {n_frames}')
        clips.append(Clip(it.id, frames, boxes))
    return clips


def run_tracking(model: torch.nn.Module, clips: Sequence[Clip], method, batch_size: int) -> dict:
    "Track every clip with `method`, `batch_size` videos at a time (streaming): frames, seconds, mean f-evals per frame."
    from ldeq.video.tracking import VideoSource, track
    srcs = [VideoSource(iter(c.frames), boxes=c.boxes, name=c.name) for c in clips]
    n, nfe, failed = 0, 0.0, 0
    t0 = time.perf_counter()
    for r in track(model, srcs, method, batch_size):
        n += 1; nfe += r.nfe; failed += r.failed
    if model_device(model).type == 'cuda': torch.cuda.synchronize()
    return dict(frames=n, seconds=time.perf_counter() - t0, nfe_per_frame=nfe / max(n, 1), failed_frames=failed)


def model_device(model: torch.nn.Module) -> torch.device:
    "The device of a model's first parameter."
    return next(model.parameters()).device


def throughput(model: torch.nn.Module, clips: Sequence[Clip], configs: Sequence[tuple[Any, int]], repeats: int) -> list[dict]:
    "Median frames/s of each (method, batch size) over `repeats` rounds (the configurations alternate within a round)."
    for method, bs in configs:                            # warm-up: the first clip's first 3 frames, once per configuration
        run_tracking(model, [Clip(clips[0].name, clips[0].frames[:3], clips[0].boxes[:3])] * bs, method, bs)
    runs: list[list[dict]] = [[] for _ in configs]
    for _ in range(max(repeats, 1)):
        for i, (method, bs) in enumerate(configs): runs[i].append(run_tracking(model, clips, method, bs))
    out = []
    for rs in runs:
        fps = [r['frames'] / r['seconds'] for r in rs]
        out.append(dict(fps=statistics.median(fps), all_fps=fps, nfe_per_frame=rs[0]['nfe_per_frame'], frames=rs[0]['frames'],
                        failed_frames=rs[0]['failed_frames']))
    return out


def video_checkpoint(ctx: Context) -> Path | None:
    "`--checkpoint`, else the shipped demo LDEQ if it exists (not with --quick), else None (a random model)."
    if ctx.checkpoint is not None: return ctx.checkpoint
    return DEFAULT_CHECKPOINT if not ctx.quick and DEFAULT_CHECKPOINT.is_file() else None


def video_model(ctx: Context, device: torch.device | None = None) -> tuple[torch.nn.Module, str]:
    "The checkpoint's model (must be an LDEQ), else a random LDEQ of the plan's preset; and a description."
    from ldeq.models.checkpoint import load_model
    ck, device = video_checkpoint(ctx), device or ctx.device
    if ck is not None:
        m = load_model(ck, str(device))
        if not isinstance(m, LDEQ): raise TypeError(f'{ck}: the video benchmark needs an LDEQ checkpoint (RwR), got {type(m).__name__}')
        return m, f'checkpoint {ck}'
    torch.manual_seed(0)
    m = LDEQ(LDEQConfig.preset(ctx.plan.video_preset)).to(device).eval()
    return m, (f'randomly initialised `{ctx.plan.video_preset}` LDEQ (no checkpoint: untrained weights, so throughput '
               'and f-evaluations are not those of a trained model)')


def length_worker(spec: dict) -> dict:
    "RwR on one generated stream of `n` frames, in a fresh process: peak-RSS growth while streaming."
    from ldeq.video.methods import RwR
    from ldeq.video.tracking import VideoSource, track
    from ldeq.data.videoio import read_frames
    torch.manual_seed(0)
    model = LDEQ(LDEQConfig.preset(spec['preset'])).to(spec['device']).eval()
    frames = list(islice(read_frames(spec['video']), spec['clip_frames']))
    boxes = np.load(spec['boxes'], allow_pickle=False)[:len(frames)]
    method = RwR(spec['k'])
    def stream(n: int, seed: int) -> VideoSource:
        return VideoSource(noisy_stream(frames, n, seed), boxes=CycledBoxes(boxes, n), name=f'stream{n}')
    for _ in track(model, [stream(20, 1)], method): pass                      # warm-up
    gc.collect()
    tight = malloc_tight()
    cuda = spec['device'].startswith('cuda')
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    reset = reset_peak_rss()
    rss0 = rss_status('VmRSS')
    n, nfe, t0 = 0, 0.0, time.perf_counter()
    for r in track(model, [stream(spec['n'], 2)], method):
        n += 1; nfe += r.nfe
    secs = time.perf_counter() - t0
    hwm, rss1 = rss_status('VmHWM'), rss_status('VmRSS')
    return dict(frames=n, seconds=secs, fps=n / secs, nfe_per_frame=nfe / n,
                peak_growth_mib=(hwm - rss0) / MIB if reset and hwm is not None and rss0 is not None else None,
                end_growth_mib=(rss1 - rss0) / MIB if rss1 is not None and rss0 is not None else None,
                rss_before_mib=None if rss0 is None else rss0 / MIB,
                ru_maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, malloc_tight=tight,
                cuda_peak_mib=torch.cuda.max_memory_allocated() / MIB if cuda else None)


def estimate(ctx: Context) -> float:
    "Seconds: decode + (1 + repeats) × the three methods' frames × (FLOPs / rate + per-frame overhead), + the length streams."
    p = ctx.plan
    cfg = video_model(ctx, torch.device('cpu'))[0].cfg if video_checkpoint(ctx) is not None else LDEQConfig.preset(p.video_preset)
    c, rate = model_cost(cfg), ctx.gflops * 1e9 / BATCH1_SLOWDOWN
    fbf = (c.stem_flops + (cfg.deq.fwd.max_iters + 1) * c.cell_flops) / rate + FRAME_OVERHEAD_S
    rwr = (c.stem_flops + p.rwr_k * c.cell_flops) / rate + FRAME_OVERHEAD_S
    per_video = p.video_frames * fbf + 2 * (fbf + (p.video_frames - 1) * rwr)
    t = p.video_videos * p.video_frames * 0.002 + (1 + p.repeats) * p.video_videos * per_video
    lc = model_cost(LDEQConfig.preset(p.length_preset))
    per_len = (lc.stem_flops + p.rwr_k * lc.cell_flops) / rate + FRAME_OVERHEAD_S
    t += sum(SUBPROCESS_S + (n + 20) * per_len for n in p.lengths)
    if ctx.video_root is None:                            # the synthetic videos are generated on first use (issue 4: <= 3 min)
        from ldeq.faces.synth import MARKER, default_synthetic_root
        if not (default_synthetic_root() / 'wflw_v' / MARKER).is_file(): t += SYNTHETIC_VIDEOS_S
    return t


def run(ctx: Context) -> dict:
    "Throughput of frame-by-frame, RwR and batched RwR; memory vs stream length."
    from ldeq.video.methods import FrameByFrame, RwR, method_label
    from ldeq.data.formats import wflwv_items
    p = ctx.plan
    root = video_root(ctx)
    clips = load_clips(root, p.video_videos, p.video_frames)
    model, model_note = video_model(ctx)
    configs = [('frame-by-frame', FrameByFrame(), 1), (f'RwR k={p.rwr_k}', RwR(p.rwr_k), 1),
               (f'RwR k={p.rwr_k}, {p.video_batch} videos batched', RwR(p.rwr_k), p.video_batch)]
    res = throughput(model, clips, [(m, bs) for _, m, bs in configs], p.repeats)
    rows = [dict(name=name, method=method_label(m), batch_size=bs, **r) for (name, m, bs), r in zip(configs, res)]
    fbf = rows[0]['fps']
    for r in rows: r['speedup_vs_frame_by_frame'] = r['fps'] / fbf
    item = wflwv_items(root, 'full')[0]
    lengths = []
    for n in tqdm(p.lengths, desc='memory vs length', disable=not ctx.progress):
        spec = dict(n=n, preset=p.length_preset, k=p.rwr_k, video=str(item.video), boxes=str(item.bboxes), clip_frames=80,
                    device=str(ctx.device), threads=ctx.threads)
        lengths.append(dict(length=n, **run_worker('length', spec)))
    short, long = lengths[0], lengths[-1]
    key = 'cuda_peak_mib' if ctx.device.type == 'cuda' else 'peak_growth_mib'
    bounded = (None if short[key] is None or long[key] is None else long[key] <= short[key] + LENGTH_TOLERANCE_MIB)
    per_frame = (None if short[key] is None or long[key] is None
                 else (long[key] - short[key]) * MIB / (long['length'] - short['length']))
    cfg = model.cfg
    return dict(root=str(root), model=model_note, preset_image_size=cfg.image_size, solver=dict(
                    method=cfg.deq.fwd.method, max_iters=cfg.deq.fwd.max_iters, tol=cfg.deq.fwd.tol),
                videos=p.video_videos, frames_per_video=p.video_frames, repeats=p.repeats, device=str(ctx.device),
                throughput=rows, length_preset=p.length_preset, lengths=lengths, length_metric=key,
                growth_bytes_per_extra_frame=per_frame,
                targets=dict(rwr_fps_at_least_2x=rows[1]['speedup_vs_frame_by_frame'] >= 2.0,
                             batched_rwr_fps_at_least_2x=rows[2]['speedup_vs_frame_by_frame'] >= 2.0,
                             memory_bounded_in_length=bounded))


def report(s: dict) -> str:
    "Markdown of the video section."
    rows = [[r['name'], r['batch_size'], r['frames'], fmt(r['fps'], '.1f'), fmt(r['nfe_per_frame'], '.2f'),
             f"×{r['speedup_vs_frame_by_frame']:.2f}", r['failed_frames']] for r in s['throughput']]
    lrows = [[f"{r['length']:,}", fmt(r['fps'], '.1f'), fmt(r['nfe_per_frame'], '.2f'), fmt(r['rss_before_mib'], '.0f'),
              fmt(r['peak_growth_mib'], '.1f'), fmt(r['end_growth_mib'], '.1f'), fmt(r['cuda_peak_mib'], '.1f')] for r in s['lengths']]
    t = s['targets']
    return '\n\n'.join([
        f"Model: {s['model']}; solver {s['solver']['method']}, ≤ {s['solver']['max_iters']} iterations, tol "
        f"{s['solver']['tol']:g}. {s['videos']} synthetic videos × {s['frames_per_video']} frames ({s['root']}), decoded "
        f"into memory, tracked with `ldeq.video.tracking.track` (crop, model, mapping back; given boxes); frames/s is the median "
        f"of {s['repeats']} rounds after a warm-up (the methods alternate within a round), on {s['device']}. RwR's first "
        "frame of each video is a full solve.",
        md_table(['method', 'videos per batch', 'frames', 'frames/s', 'f-evals / frame', 'vs frame-by-frame', 'failed frames'], rows),
        f"- RwR ≥ 2× the frames/s of frame-by-frame (issue 6): {yes_no(t['rwr_fps_at_least_2x'])} "
        f"(batched: {yes_no(t['batched_rwr_fps_at_least_2x'])})",
        f"Memory vs video length: RwR on one stream of generated frames (one synthetic clip cycled with noise, boxes "
        f"cycled lazily), each length in a fresh process after a 20-frame warm-up, `{s['length_preset']}` preset with "
        "random weights (to afford the long stream on 2 cores). *Peak growth*: peak RSS while streaming minus RSS before "
        "(VmHWM reset via /proc/self/clear_refs); *end growth*: RSS after minus before.",
        md_table(['frames', 'frames/s', 'f-evals / frame', 'RSS before MiB', 'peak growth MiB', 'end growth MiB', 'CUDA peak MiB'], lrows),
        f"- memory does not grow with length (long ≤ short + {LENGTH_TOLERANCE_MIB:g} MiB, on `{s['length_metric']}`): "
        f"{yes_no(t['memory_bounded_in_length'])}; difference per extra frame: "
        f"{fmt(s['growth_bytes_per_extra_frame'], '.0f')} bytes (a leak of one frame's 98 landmarks would be 1,568)"])
