"""run_all.py's `cost` section: parameters, conv FLOPs, ms per image and the achieved GFLOP/s of the `small` and
`paper` presets, against this machine's measured float32 matmul peak."""
from __future__ import annotations

import statistics
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ldeq.models.model import LDEQ, LDEQConfig, model_cost, time_forward

from .bench_context import Context
from .common import count_f_evals, fmt, md_table, median_time


def matmul_speed(n: int, repeats: int, device: torch.device) -> dict:
    "GFLOP/s of an n × n float32 matmul (2 n³ FLOPs), median of `repeats` after a warm-up."
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device) for _ in range(2))
    t, ts = median_time(lambda: a @ b, repeats, 1, device)
    return dict(n=n, seconds=t, gflops=2 * n ** 3 / t / 1e9, all_seconds=ts)


def matmul_peak(sizes: Sequence[int], repeats: int, device: torch.device) -> dict:
    "The best median GFLOP/s over float32 matmuls of the given sizes (the machine's practical peak), and each size's."
    runs = [matmul_speed(n, repeats, device) for n in sizes]
    best = max(runs, key=lambda r: r['gflops'])
    return dict(n=best['n'], gflops=best['gflops'], sizes=runs)


def estimate(ctx: Context) -> float:
    "Seconds: the matmuls, and (count / warm-up + repeats) forwards of 5 f-evaluations per timed case."
    p, rate = ctx.plan, ctx.gflops * 1e9
    t = sum((1 + max(p.repeats, 3)) * 2 * n ** 3 for n in p.matmul_sizes) / rate
    for preset, batch, reps in p.cost_cases:
        if reps: t += (1 + reps) * batch * model_cost(LDEQConfig.preset(preset)).forward_flops(5) / rate
    return t + 1.0


def run(ctx: Context, iters: int = 5) -> dict:
    "Parameters, FLOPs, ms per image and achieved GFLOP/s of the presets vs the measured matmul peak."
    p = ctx.plan
    sizes = (4096, 8192, 16384) if ctx.device.type == 'cuda' else p.matmul_sizes
    peak = matmul_peak(sizes, max(p.repeats, 3), ctx.device)
    rows = []
    for preset, batch, reps in tqdm(p.cost_cases, desc='cost', disable=not ctx.progress):
        cfg = LDEQConfig.preset(preset)
        c = model_cost(cfg)
        row = dict(preset=preset, batch=batch, params=c.params, stem_gflops=c.stem_flops / 1e9, cell_gflops=c.cell_flops / 1e9,
                   iters=iters, repeats=reps)
        if reps:
            torch.manual_seed(0)
            model = LDEQ(cfg).to(ctx.device).eval()
            f_evals = count_f_evals(model, batch, iters)                  # also the warm-up
            ms = [time_forward(model, batch, iters, repeats=1, warmup=0) for _ in range(reps)]
            row.update(f_evals=f_evals, ms_per_image=statistics.median(ms), all_ms_per_image=ms,
                       forward_gflops=c.forward_flops(f_evals) / 1e9)
            row['achieved_gflops'] = row['forward_gflops'] / (row['ms_per_image'] / 1e3)
            row['fraction_of_peak'] = row['achieved_gflops'] / peak['gflops']
            del model
        rows.append(row)
    tf32 = ctx.device.type == 'cuda' and torch.backends.cudnn.allow_tf32
    return dict(device=str(ctx.device), matmul=peak, rows=rows, tf32_convolutions=tf32)


def report(s: dict) -> str:
    "Markdown of the cost section."
    rows = [[r['preset'], r['batch'], f"{r['params'] / 1e6:.2f} M", fmt(r['stem_gflops'], '.2f'), fmt(r['cell_gflops'], '.2f'),
             r.get('f_evals', '–'), fmt(r.get('ms_per_image'), '.1f', 'not timed'), fmt(r.get('achieved_gflops'), '.1f'),
             fmt(None if r.get('fraction_of_peak') is None else 100 * r['fraction_of_peak'], '.0f')] for r in s['rows']]
    m = s['matmul']
    return '\n\n'.join([
        f"Inference forward with {s['rows'][0]['iters']} solver iterations (tol 0; f-evaluations counted by a hook), "
        f"random weights, on {s['device']}; ms per image is the median over single timed runs after a warm-up. FLOPs: "
        "convolutions only (`ldeq.models.model.model_cost`, meta tensors, 2 per multiply-add), per image. Peak: the best "
        f"float32 matmul, {m['gflops']:.1f} GFLOP/s at {m['n']}×{m['n']} (sizes "
        f"{', '.join(str(r['n']) for r in m['sizes'])}). Above 100% means the convolution library does fewer "
        "multiply-adds than the direct count (e.g. Winograd) or runs closer to the hardware peak than the matmul."
        + (" cuDNN convolutions may use TF32 here (torch.backends.cudnn.allow_tf32), the matmul peak is strict float32."
           if s.get('tf32_convolutions') else ''),
        md_table(['preset', 'batch', 'params', 'stem GFLOP', 'GFLOP per f-eval', 'f-evals', 'ms / image', 'achieved GFLOP/s',
                  '% of matmul peak'], rows)])
