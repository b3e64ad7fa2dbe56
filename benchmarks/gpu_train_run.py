"""gpu_check.py's `train_run` part: a short real training run (`ldeq.training.train.train`, the `paper` recipe on the
synthetic stills) stopped by `max_steps`, then resumed from its last.pt to the end of its epochs."""
from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
import time
from pathlib import Path

from .common import MIB, cpu_workers, fmt, md_table, yes_no
from .gpu_context import Ctx, free_cuda, peak_mib, reset_peak, synthetic_paths


def train_run_config(ctx: Ctx, out_dir: Path):
    "The TrainConfig of the short run: the `paper` recipe on the synthetic stills, shortened by the plan."
    from ldeq.training.train import TrainConfig
    p = ctx.plan
    return TrainConfig.recipe(
        'paper', preset=p.preset, dataset='synthetic', data_root=None if p.default_synthetic else str(ctx.out / 'synthetic'),
        train_subset=p.run_batch * p.run_steps_per_epoch, val_subset=p.run_val, epochs=p.run_epochs,
        batch_size=p.run_batch, backward='jfb', precision='bf16' if ctx.cuda else 'fp32',
        device=str(ctx.device), out_dir=str(out_dir), max_steps=p.run_stop,
        num_workers=max(0, min(8, cpu_workers() - 2)) if ctx.cuda else 0, progress=False)


def _epochs(history: list[dict]) -> list[dict]:
    "The per-epoch rows worth reporting."
    keys = ('epoch', 'global_step', 'train_loss', 'val_nme', 'train_solver_steps', 'lr', 'epoch_seconds')
    return [{k: r.get(k) for k in keys} for r in history]


def run(ctx: Ctx) -> dict:
    "A short real run to `max_steps` (last.pt written), then resumed from it to the end of its epochs."
    from ldeq.models.checkpoint import load_checkpoint
    from ldeq.training.train import train
    p, dev = ctx.plan, ctx.device
    synthetic_paths(ctx, ('stills',))                      # with every core, not the 2 workers of a first use in train()
    out_dir = ctx.out / 'train_run'
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = train_run_config(ctx, out_dir)
    total = p.run_epochs * p.run_steps_per_epoch
    res = dict(config={k: v for k, v in cfg.to_dict().items() if k in (
        'model', 'preset', 'backward', 'dataset', 'train_subset', 'val_subset', 'epochs', 'batch_size', 'lr', 'grad_clip',
        'precision', 'device', 'max_steps', 'num_workers')}, total_steps=total)
    reset_peak(dev)
    t0 = time.perf_counter()
    r1 = train(cfg)
    res.update(first=dict(seconds=time.perf_counter() - t0, global_step=r1.global_step, finished=r1.finished,
                          history=_epochs(r1.history), peak_mib=peak_mib(dev)))
    res['first']['images_per_s'] = r1.global_step * p.run_batch / res['first']['seconds']
    last = out_dir / 'last.pt'
    res['last_pt_mib'] = last.stat().st_size / MIB if last.is_file() else None
    ts = load_checkpoint(last, map_location='cpu').train_state if last.is_file() else None
    res['saved_step'] = None if ts is None else ts['global_step']
    ctx.save(res)
    del r1
    free_cuda(dev)
    t0 = time.perf_counter()
    r2 = train(dataclasses.replace(cfg, resume=True, max_steps=None))
    res['resumed'] = dict(seconds=time.perf_counter() - t0, global_step=r2.global_step, finished=r2.finished,
                          history=_epochs(r2.history), best_nme=r2.best_nme)
    h, n1 = res['resumed']['history'], len(res['first']['history'])
    later = h[1:] if len(h) > 1 else h                     # the first epoch includes cuDNN's and the loader's start-up
    steady = [p.run_batch * p.run_steps_per_epoch / r['epoch_seconds'] for r in later if r['epoch_seconds']]
    res['epoch_images_per_s'] = statistics.median(steady) if steady else None
    res['checks'] = dict(
        last_pt_written=res['saved_step'] is not None,
        stopped_at_max_steps=res['first']['global_step'] == p.run_stop == res['saved_step'] and not res['first']['finished'],
        resumed_from_saved_step=(r2.finished and r2.global_step == total and h[:n1] == res['first']['history']
                                 and (len(h) == n1 or h[n1]['global_step'] > p.run_stop)),
        finite_losses=all(math.isfinite(r['train_loss']) for r in h),
        loss_went_down=None if ctx.quick else (len(h) > 1 and h[-1]['train_loss'] < h[0]['train_loss']))
    return res


def summary(r: dict) -> str:
    "One line of the train_run part."
    h = (r.get('resumed') or r.get('first') or {}).get('history') or []
    loss = f"loss {h[0]['train_loss']:.3g} → {h[-1]['train_loss']:.3g} over {len(h)} epochs, " if h else ''
    first = r.get('first', {})
    return (loss + f"{fmt(first.get('images_per_s'), '.0f')} images/s end to end; stopped at step {r.get('saved_step')}, "
            f"resumed to {r.get('resumed', {}).get('global_step', '–')}")


def report(r: dict) -> str:
    "Markdown of the train_run part."
    c, first, res = r['config'], r['first'], r.get('resumed', {})
    h = res.get('history') or first['history']
    rows = [[x['epoch'] + 1, x['global_step'], fmt(x['train_loss'], '.4g'), fmt(None if x['val_nme'] is None else 100 * x['val_nme'], '.2f'),
             fmt(x['train_solver_steps'], '.1f'), fmt(x['lr'], '.2e'), fmt(x['epoch_seconds'], '.1f')] for x in h]
    checks = r.get('checks', {})
    return '\n\n'.join([
        f"`ldeq.training.train.train` with the `paper` recipe shortened: {c['model']} `{c['preset']}` ({c['backward']} backward), "
        f"{c['dataset']} stills (the first {c['train_subset']} training images, {c['val_subset']} validation images), "
        f"batch {c['batch_size']}, {c['epochs']} epochs = {r['total_steps']} steps, {c['precision']}, {c['num_workers']} "
        f"loader workers, on {c['device']}. First run: `max_steps={c['max_steps']}`, {first['seconds']:.1f} s, "
        f"{fmt(first['images_per_s'], '.1f')} images/s end to end (start-up, validation and checkpoints included), peak "
        f"GPU memory {fmt(first['peak_mib'], '.0f')} MiB; last.pt {fmt(r['last_pt_mib'], '.0f')} MiB at global step "
        f"{r['saved_step']}. Resumed (`resume=True`): {fmt(res.get('seconds'), '.1f')} s to global step "
        f"{res.get('global_step', '–')}; per-epoch rate {fmt(r.get('epoch_images_per_s'), '.1f')} images/s (median over "
        "epochs after the first, validation included).",
        md_table(['epoch', 'global step', 'train loss', 'val NME %', 'solver steps', 'lr', 's'], rows),
        '\n'.join(f"- {k.replace('_', ' ')}: {yes_no(v)}" for k, v in checks.items())])
