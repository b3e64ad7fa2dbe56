"""run_all.py's `memory` section: the data behind the paper's Fig. 1. One training step of LDEQ (`implicit` and
`unrolled` backward) at K solver iterations and of a Stacked-Hourglass with K stacks, each row in a fresh process
(`worker`, run through `python -m benchmarks.run_all --worker memory`): the bytes saved for backward, the peak-RSS
growth and the median time per step."""
from __future__ import annotations

import gc
import statistics
from typing import Callable

import torch
from tqdm.auto import tqdm

from ldeq.models.baselines import StackedHourglass, StackedHourglassConfig
from ldeq.models.memory import training_memory
from ldeq.models.model import LDEQ, LDEQConfig, model_cost

from .bench_context import SUBPROCESS_S, Context
from .common import IMPLICIT_FLAT_RATIO, MIB, fmt, ldeq_config, malloc_tight, md_table, run_worker, yes_no


def _memory_model(spec: dict) -> tuple[torch.nn.Module, dict | None]:
    "The model (and forward kwargs) of one memory row."
    torch.manual_seed(spec['seed'])
    if spec['model'] == 'ldeq':
        return LDEQ(ldeq_config(spec['preset'], spec['backward'], exact_iters=True)), dict(max_iters=spec['k'])
    return StackedHourglass(StackedHourglassConfig.preset(spec['preset'], n_stacks=spec['k'])), None


def worker(spec: dict) -> dict:
    "One row, in a fresh process: median time of `repeats` steps after a warm-up, then one step measured for memory."
    model, kw = _memory_model(spec)
    step = lambda: training_memory(model, spec['batch'], kw, spec['seed'], spec['device'])
    first = step()                                                   # warm-up: one-time initialisation
    times = [step().seconds for _ in range(spec['repeats'])]
    gc.collect()
    tight = malloc_tight()                                           # so that freed warm-up memory cannot hide the peak
    m = step()
    return dict(saved_mib=m.saved_mib, saved_tensors=m.saved_tensors,
                peak_rss_mib=None if m.peak_rss_delta is None else m.peak_rss_delta / MIB,
                first_step_peak_rss_mib=None if first.peak_rss_delta is None else first.peak_rss_delta / MIB,
                cuda_peak_mib=None if m.cuda_peak_bytes is None else m.cuda_peak_bytes / MIB, malloc_tight=tight,
                first_step_s=first.seconds, step_s=statistics.median(times), all_step_s=times,
                params=sum(p.numel() for p in model.parameters()))


def _memory_specs(ctx: Context) -> list[dict]:
    "One spec per row of the memory table."
    p = ctx.plan
    base = dict(preset=p.memory_preset, batch=p.memory_batch, seed=0, device=str(ctx.device), repeats=p.repeats, threads=ctx.threads)
    specs = [dict(base, model='ldeq', backward=bw, k=k) for bw in ('implicit', 'unrolled') for k in p.memory_iters]
    return specs + [dict(base, model='stacked_hourglass', backward=None, k=k) for k in p.memory_stacks]


def _flops(build: Callable[[], torch.nn.Module], shape: tuple[int, ...], **kw) -> int:
    "FLOPs of one forward of the model `build()` on meta tensors of `shape`."
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device('meta'): m = build()
    with torch.no_grad(), FlopCounterMode(display=False) as fc: m(torch.empty(shape, device='meta'), **kw)
    return fc.get_total_flops()


def estimate(ctx: Context) -> float:
    "Seconds: per row a subprocess plus (2 + repeats) steps of ~3× forward FLOPs (implicit: + 30 adjoint VJPs)."
    p, total = ctx.plan, 0.0
    c = model_cost(LDEQConfig.preset(p.memory_preset))
    for sp in _memory_specs(ctx):
        if sp['model'] == 'ldeq':
            fl = c.stem_flops * 3 + ((sp['k'] + 1) * c.cell_flops * (3 if sp['backward'] == 'unrolled' else 1)
                                     + (2 * 30 * c.cell_flops if sp['backward'] == 'implicit' else 0))
        else:
            cfg = StackedHourglassConfig.preset(p.memory_preset, n_stacks=sp['k'])
            fl = 3 * _flops(lambda: StackedHourglass(cfg), (1, 3, cfg.image_size, cfg.image_size))
        total += SUBPROCESS_S + (2 + p.repeats) * p.memory_batch * fl / (ctx.gflops * 1e9)
    return total


def run(ctx: Context) -> dict:
    "Training memory and time per step vs solver iterations / stacks (Fig. 1)."
    specs = _memory_specs(ctx)
    rows = []
    for sp in tqdm(specs, desc='memory', disable=not ctx.progress):
        r = run_worker('memory', sp)
        name = 'Stacked-Hourglass' if sp['model'] != 'ldeq' else f"LDEQ {sp['backward']}"
        rows.append(dict(model=name, k=sp['k'], unit='stacks' if sp['model'] != 'ldeq' else 'iterations', **r))
    def series(name):
        return [r for r in rows if r['model'] == name]
    growth = {}
    for name in ('LDEQ implicit', 'LDEQ unrolled', 'Stacked-Hourglass'):
        s = series(name)
        if len(s) < 2: continue
        saved = [r['saved_mib'] for r in s]
        peak = [r['peak_rss_mib'] for r in s if r['peak_rss_mib'] is not None]
        growth[name] = dict(k=(s[0]['k'], s[-1]['k']), saved_ratio=saved[-1] / saved[0], saved_max_over_min=max(saved) / min(saved),
                            peak_rss_ratio=peak[-1] / peak[0] if len(peak) == len(s) and peak[0] > 0 else None,
                            step_time_ratio=s[-1]['step_s'] / s[0]['step_s'])
    targets = {}
    if 'LDEQ implicit' in growth: targets['implicit_flat'] = growth['LDEQ implicit']['saved_max_over_min'] <= IMPLICIT_FLAT_RATIO
    for name in ('LDEQ unrolled', 'Stacked-Hourglass'):
        if name in growth: targets[f'{name}_grows'] = growth[name]['saved_ratio'] > 1.5
    p = ctx.plan
    return dict(preset=p.memory_preset, batch=p.memory_batch, device=str(ctx.device), repeats=p.repeats, rows=rows,
                growth=growth, targets=targets)


def report(s: dict) -> str:
    "Markdown of the memory section."
    cuda = any(r['cuda_peak_mib'] is not None for r in s['rows'])
    hdr = ['model', 'K', 'params', 'saved for backward MiB', 'peak RSS growth MiB'] + (['CUDA peak MiB'] if cuda else []) + ['step s (median)']
    rows = [[r['model'], f"{r['k']} {r['unit']}", f"{r['params'] / 1e6:.2f} M", fmt(r['saved_mib'], '.1f'), fmt(r['peak_rss_mib'], '.1f')]
            + ([fmt(r['cuda_peak_mib'], '.1f')] if cuda else []) + [fmt(r['step_s'], '.3f')] for r in s['rows']]
    g = s['growth']
    lines = [f"- {n}: K {v['k'][0]} → {v['k'][1]}: saved for backward ×{v['saved_ratio']:.2f}, peak RSS growth "
             f"×{fmt(v['peak_rss_ratio'])}, step time ×{v['step_time_ratio']:.2f}" for n, v in g.items()]
    t = s['targets']
    verdicts = [f"- LDEQ implicit flat (saved bytes max/min ≤ {IMPLICIT_FLAT_RATIO}): {yes_no(t.get('implicit_flat'))}",
                f"- LDEQ unrolled grows: {yes_no(t.get('LDEQ unrolled_grows'))}; Stacked-Hourglass grows: {yes_no(t.get('Stacked-Hourglass_grows'))}"]
    return '\n\n'.join([
        f"One training step (forward, MSE landmark loss on every supervised output, backward), `{s['preset']}` preset, "
        f"batch {s['batch']}, random weights, each row in a fresh process on {s['device']}. LDEQ runs exactly K solver "
        "iterations (tol 0); its implicit backward solves the adjoint with its own settings (≤ 30 VJPs). "
        "*Saved for backward*: distinct storages autograd keeps (parameters excluded; exact). *Peak RSS growth*: "
        "the process's peak resident memory during a step minus before it (activations, gradients, workspace; measured "
        "after the timed steps, with glibc's mmap threshold pinned at 64 KiB and its heap trimmed). "
        f"Step time: median of {s['repeats']} steps after a warm-up step.",
        md_table(hdr, rows), '\n'.join(lines), '\n'.join(verdicts)])
