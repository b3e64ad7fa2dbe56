"""gpu_check.py's `inference` part: images/s of an inference forward with exactly `infer_iters` solver iterations at
several batches, fp32 and bf16 autocast, with the peak GPU memory and the achieved conv TFLOP/s."""
from __future__ import annotations

import torch

from ldeq.models.model import LDEQ, LDEQConfig, count_parameters, model_cost, time_forward

from .common import count_f_evals, fmt, md_table
from .gpu_context import PRECISIONS, Ctx, free_cuda, peak_mib, reset_peak


def run(ctx: Ctx) -> dict:
    "Images/s of an inference forward with exactly `infer_iters` solver iterations, per batch and precision."
    from ldeq.training.train import autocast
    p, dev = ctx.plan, ctx.device
    cfg = LDEQConfig.preset(p.preset)
    torch.manual_seed(0)
    model = LDEQ(cfg).to(dev).eval()
    f_evals = count_f_evals(model, 1, p.infer_iters)
    gflop = model_cost(cfg).forward_flops(f_evals) / 1e9
    res = dict(preset=p.preset, params=count_parameters(model), iters=p.infer_iters, f_evals=f_evals,
               gflop_per_image=gflop, repeats=p.repeats, rows=[])
    for precision in PRECISIONS:
        for b in p.infer_batches:
            reset_peak(dev)
            with autocast(dev, precision): ms = time_forward(model, b, p.infer_iters, repeats=p.repeats, warmup=1)
            res['rows'].append(dict(precision=precision, batch=b, ms_per_image=ms, images_per_s=1000 / ms,
                                    tflops=gflop * 1000 / ms / 1e3, peak_mib=peak_mib(dev)))
            ctx.save(res)
        free_cuda(dev)
    res['checks'] = dict(exact_f_evals=f_evals == p.infer_iters)          # inference: the extra step reuses the solver's f(z*)
    return res


def summary(r: dict) -> str:
    "One line of the inference part."
    best = {pr: max((x for x in r['rows'] if x['precision'] == pr), key=lambda x: x['images_per_s'], default=None) for pr in PRECISIONS}
    return '; '.join(f"{pr} {fmt(b['images_per_s'], '.0f')} images/s at batch {b['batch']}" for pr, b in best.items() if b)


def report(r: dict) -> str:
    "Markdown of the inference part."
    rows = [[x['precision'], x['batch'], fmt(x['ms_per_image'], '.2f'), fmt(x['images_per_s'], '.1f'), fmt(x['tflops'], '.1f'),
             fmt(x['peak_mib'], '.0f')] for x in r['rows']]
    return (f"`{r['preset']}` preset ({r['params'] / 1e6:.2f} M parameters), random weights, eval, no grad: an inference "
            f"forward with exactly {r['iters']} solver iterations (tol 0) = {r['f_evals']} evaluations of f (counted by a "
            f"hook), {r['gflop_per_image']:.0f} GFLOP per image (convolutions, `ldeq.models.model.model_cost`). Best of "
            f"{r['repeats']} timed runs after a warm-up (`ldeq.models.model.time_forward`); bf16 is autocast.\n\n"
            + md_table(['precision', 'batch', 'ms / image', 'images/s', 'conv TFLOP/s', 'peak GPU MiB'], rows))
