"""gpu_check.py's `train_step` part: training-step images/s and peak GPU memory per backward (implicit, JFB) and
precision; then Fig. 1 on the device (`ldeq.models.memory.fig1_memory_table`)."""
from __future__ import annotations

import math
import statistics

import torch

from ldeq.models.model import LDEQ, LDEQConfig

from .common import IMPLICIT_FLAT_RATIO, fmt, ldeq_config, md_table, median_time, yes_no
from .gpu_context import PRECISIONS, Ctx, free_cuda, peak_mib, reset_peak


def run(ctx: Ctx) -> dict:
    "Training-step images/s and peak memory per backward and precision; then Fig. 1's memory rows on the device."
    from ldeq.models.memory import fig1_memory_table
    from ldeq.training.train import train_step
    p, dev = ctx.plan, ctx.device
    cfg = LDEQConfig.preset(p.preset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p.step_batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(dev)
    target = torch.rand(p.step_batch, cfg.n_landmarks, 2, generator=g).to(dev)
    res = dict(preset=p.preset, batch=p.step_batch, repeats=p.repeats, warmup=p.step_warmup, steps=[], memory=[],
               memory_batch=p.memory_batch)
    for backward in ('implicit', 'jfb'):
        for precision in PRECISIONS:
            torch.manual_seed(0)
            model = LDEQ(ldeq_config(p.preset, backward)).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            losses, solver_steps = [], []
            def step():
                loss, s = train_step(model, x, target, opt, precision=precision)
                losses.append(loss.item()); solver_steps.append(s.float().mean().item())
            for _ in range(p.step_warmup): step()              # warm-up (cuDNN, the allocator, AdamW's state)
            reset_peak(dev)
            t, _ = median_time(step, p.repeats, 0, dev)
            res['steps'].append(dict(backward=backward, precision=precision, step_s=t, images_per_s=p.step_batch / t,
                                     solver_steps=statistics.mean(solver_steps), loss=losses[-1], peak_mib=peak_mib(dev)))
            ctx.save(res)
            del model, opt
            free_cuda(dev)
    for backward, iters in (('implicit', p.implicit_iters), ('unrolled', p.unrolled_iters)):
        if not iters: continue
        res['memory'] += [dict(r, backward=backward) for r in fig1_memory_table(
            p.preset, p.memory_batch, ldeq_iters=iters, shg_stacks=(), backwards=(backward,), device=str(dev))]
        ctx.save(res)
        free_cuda(dev)
    imp = [r for r in res['memory'] if r['backward'] == 'implicit']
    ratio = lambda key: max(r[key] for r in imp) / min(r[key] for r in imp) if imp and all(r[key] for r in imp) else None
    res.update(saved_ratio=ratio('saved_mib'), cuda_peak_ratio=ratio('cuda_peak_mib'))
    res['checks'] = dict(finite_losses=all(math.isfinite(r['loss']) for r in res['steps']),
                         implicit_saved_memory_flat=res['saved_ratio'] is not None and res['saved_ratio'] <= IMPLICIT_FLAT_RATIO,
                         implicit_gpu_memory_flat=None if res['cuda_peak_ratio'] is None else res['cuda_peak_ratio'] <= IMPLICIT_FLAT_RATIO)
    return res


def summary(r: dict) -> str:
    "One line of the train_step part."
    s = '; '.join(f"{x['backward']} {x['precision']} {fmt(x['images_per_s'], '.0f')} images/s"
                  + (f" ({fmt(x['peak_mib'], '.0f')} MiB)" if x['peak_mib'] is not None else '') for x in r['steps'])
    key = 'cuda_peak_ratio' if r.get('cuda_peak_ratio') is not None else 'saved_ratio'
    return s + (f"; implicit memory max/min over iterations ×{fmt(r.get(key), '.3f')}" if key in r else '')


def report(r: dict) -> str:
    "Markdown of the train_step part."
    steps = [[x['backward'], x['precision'], fmt(x['step_s'] * 1e3, '.1f'), fmt(x['images_per_s'], '.1f'),
              fmt(x['solver_steps'], '.1f'), fmt(x['peak_mib'], '.0f'), fmt(x['loss'], '.3g')] for x in r['steps']]
    mem = [[x['model'], x['setting'], fmt(x['saved_mib'], '.1f'), fmt(x['cuda_peak_mib'], '.0f'), fmt(x['peak_rss_mib'], '.0f'),
            fmt(x['seconds'], '.2f')] for x in r['memory']]
    parts = [f"`ldeq.training.train.train_step` (forward, eq. 4 loss, backward, AdamW step) on a random batch of {r['batch']}, "
             f"`{r['preset']}` preset; median of {r['repeats']} steps after {r['warmup']} warm-up steps; peak GPU memory "
             "(torch.cuda.max_memory_allocated) over the timed steps.",
             md_table(['backward', 'precision', 'ms / step', 'images/s', 'forward solver steps', 'peak GPU MiB', 'loss'], steps)]
    if mem:
        c = r.get('checks', {})
        parts += [f"Fig. 1 on this device (`ldeq.models.memory.fig1_memory_table`, batch {r['memory_batch']}, tol 0): one "
                  "training step's bytes saved for backward and its peak GPU memory.",
                  md_table(['model', 'setting', 'saved for backward MiB', 'peak GPU MiB', 'peak RSS growth MiB', 's'], mem),
                  f"- LDEQ implicit saved memory flat in the iterations (max/min ×{fmt(r.get('saved_ratio'), '.3f')} ≤ "
                  f"{IMPLICIT_FLAT_RATIO}): {yes_no(c.get('implicit_saved_memory_flat'))}\n"
                  f"- LDEQ implicit peak GPU memory flat (×{fmt(r.get('cuda_peak_ratio'), '.3f')}): "
                  f"{yes_no(c.get('implicit_gpu_memory_flat'))}"]
    return '\n\n'.join(parts)
