"""run_all.py's `gpu` section (`--device cuda` only): `paper` preset training images/s (fp32 and bf16 autocast),
inference frames/s with RwR batched over videos (and frame-by-frame batched for reference), and peak GPU memory."""
from __future__ import annotations

import statistics

import torch

from ldeq.models.model import LDEQ, LDEQConfig

from .bench_context import Context
from .bench_video import load_clips, throughput, video_root
from .common import MIB, fmt, md_table, median_time


def estimate(ctx: Context) -> float:
    "Seconds (rough, an H100-class GPU): model build, training steps, tracking."
    return 60.0


def run(ctx: Context, require_cuda: bool = True) -> dict:
    "Paper preset (tiny with --quick) on CUDA: training images/s (fp32, bf16), RwR / frame-by-frame frames/s, peak memory."
    if require_cuda and ctx.device.type != 'cuda':       # require_cuda=False: a CPU smoke test of this code path only
        raise RuntimeError('the gpu section needs --device cuda')
    from ldeq.training.train import train_step
    from ldeq.video.methods import FrameByFrame, RwR
    p, dev = ctx.plan, ctx.device
    cfg = LDEQConfig.preset(p.gpu_preset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p.gpu_batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(dev)
    target = torch.rand(p.gpu_batch, cfg.n_landmarks, 2, generator=g).to(dev)
    training = []
    for precision in ('fp32', 'bf16'):
        torch.manual_seed(0)
        model = LDEQ(cfg).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        try:
            for _ in range(2): train_step(model, x, target, opt, precision=precision)
            torch.cuda.synchronize(dev); torch.cuda.reset_peak_memory_stats(dev)
            steps = []
            def step():
                _, s = train_step(model, x, target, opt, precision=precision)
                if s is not None: steps.append(s.float().mean().item())
            t, ts = median_time(step, p.gpu_steps, 0, dev)
            training.append(dict(precision=precision, batch=p.gpu_batch, step_s=t, images_per_s=p.gpu_batch / t,
                                 solver_steps=statistics.mean(steps) if steps else None,
                                 peak_mib=torch.cuda.max_memory_allocated(dev) / MIB))
        except Exception as e:
            training.append(dict(precision=precision, error=f'{type(e).__name__}: {e}'))
        del model, opt
        torch.cuda.empty_cache()
    torch.manual_seed(0)
    model = LDEQ(cfg).to(dev).eval()
    clips = load_clips(video_root(ctx), p.gpu_videos, p.video_frames)
    inference = []
    for name, method in ((f'RwR k={p.rwr_k}', RwR(p.rwr_k)), ('frame-by-frame', FrameByFrame())):
        torch.cuda.synchronize(dev); torch.cuda.reset_peak_memory_stats(dev)
        r = throughput(model, clips, [(method, p.gpu_videos)], p.repeats)[0]
        inference.append(dict(name=name, batch_size=p.gpu_videos, peak_mib=torch.cuda.max_memory_allocated(dev) / MIB, **r))
    return dict(device_name=torch.cuda.get_device_name(dev), preset=p.gpu_preset, training=training, inference=inference,
                note='random weights (frame-by-frame solves run to max_iters); frames include CPU cropping')


def report(s: dict) -> str:
    "Markdown of the gpu section."
    tr = [[r['precision'], r.get('batch', '–'), fmt(r.get('images_per_s'), '.1f'), fmt(r.get('solver_steps'), '.1f'),
           fmt(r.get('peak_mib'), '.0f'), r.get('error', '')] for r in s['training']]
    inf = [[r['name'], r['batch_size'], fmt(r['fps'], '.1f'), fmt(r['nfe_per_frame'], '.2f'), fmt(r['peak_mib'], '.0f')]
           for r in s['inference']]
    return '\n\n'.join([f"{s['device_name']}, `{s['preset']}` preset, {s['note']}.",
                        md_table(['training precision', 'batch', 'images/s', 'solver steps', 'peak GPU MiB', 'error'], tr),
                        md_table(['inference', 'videos per batch', 'frames/s', 'f-evals / frame', 'peak GPU MiB'], inf)])
