#!/usr/bin/env python
"""RwR diagnostics (issue 14) across models, σ_T temperature and solver: why RwR does or does not cut flicker.

For each configuration and each of the first `--clips` hard clips of a WFLW-V-layout set (default: the synthetic one),
`ldeq.rwr_diagnostics.clip_diagnostics` runs over `--frames` consecutive frames from `--start` (crops in the ground-truth
boxes, as WFLW-V's are): per frame, the NME gap between warm- and cold-started converged solves (> 1% = more than one
reachable fixed point), the residual after k = 1, 2, 3 warm steps, and the contraction ρ(∂f/∂z) at z*.

Configurations: every `--models` checkpoint (training length: e.g. 3, 6 and 30 epochs) at its own T and solver; the
last of them also at each `--temperatures` (T changed at test time, not retrained) and with fixed-point iteration as
the converged solver (`--fpi`). Writes per_frame.csv, summary.csv/.md and diagnostics.png under --out."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def crops_of(clip, start: int, n: int, size: int) -> torch.Tensor:
    "Normalised crops (n, 3, S, S) of frames start..start+n-1 in the clip's ground-truth boxes."
    from ldeq.preprocess import bbox_to_affine, crop_image, normalize_image
    frames = list(clip.frames())[start:start + n]
    boxes = clip.bboxes[start:start + n]
    return normalize_image(np.stack([crop_image(f, bbox_to_affine(b, 1.2, size), size) for f, b in zip(frames, boxes)]))


def set_temperature(model, T: float) -> None:
    "Change σ_T's temperature of every heatmap normalisation in the model (a test-time change)."
    from ldeq.model import HeatmapNorm
    for m in model.modules():
        if isinstance(m, HeatmapNorm): m.temperature = float(T)


def run_config(name, model, crops: dict, method: str | None, power_iters: int) -> list[dict]:
    "Per-frame rows of one configuration over the clips."
    from ldeq import rwr_diagnostics as rd
    if method:                                                # the converged solver's method (fpi / anderson)
        fwd = dataclasses.replace(model.cfg.deq.fwd, method=method)
        model.cfg.deq = dataclasses.replace(model.cfg.deq, fwd=fwd)
    rows = []
    for cid, x in crops.items():
        t0 = time.perf_counter()
        d = rd.clip_diagnostics(model, x, power_iters=power_iters)
        for i in range(len(d.gap)):
            rows.append(dict(config=name, clip=cid, frame=i + 1, gap=float(d.gap[i]), contraction=float(d.contraction[i]),
                             **{f'res{k}': float(v[i]) for k, v in d.residual.items()}))
        print(f'  {name} {cid}: {time.perf_counter() - t0:.0f} s, gap>1% {d.multi_fixed_point_fraction():.0%}, '
              f'rho median {float(d.contraction.median()):.2f}', flush=True)
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    "Per configuration (and overall per clip): fraction of frames with gap > 1%, residual medians, contraction."
    g = df.groupby('config', sort=False)
    return pd.DataFrame({'frames': g.size(), 'gap>1% (frac)': g['gap'].apply(lambda s: (s > 1).mean()),
                         'gap median %': g['gap'].median(), 'gap max %': g['gap'].max(),
                         'res k=1': g['res1'].median(), 'res k=2': g['res2'].median(), 'res k=3': g['res3'].median(),
                         'rho median': g['contraction'].median(), 'rho max': g['contraction'].max()})


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cfgs = list(dict.fromkeys(df['config']))
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for c in cfgs:
        d = df[df['config'] == c]
        ax[0].plot(np.sort(d['gap']), np.linspace(0, 1, len(d)), label=c)
        ax[1].plot([1, 2, 3], [d[f'res{k}'].median() for k in (1, 2, 3)], 'o-', label=c)
        ax[2].plot(np.sort(d['contraction']), np.linspace(0, 1, len(d)), label=c)
    ax[0].axvline(1, color='k', ls=':', lw=1); ax[0].set_xscale('symlog', linthresh=1e-3)
    ax[0].set(xlabel='warm vs cold fixed point, NME %', ylabel='fraction of frames ≤ x', title='more than one fixed point?')
    ax[1].set(yscale='log', xlabel='warm fixed-point steps k', ylabel='median relative residual', title='residual after k warm steps')
    ax[2].axvline(1, color='k', ls=':', lw=1)
    ax[2].set(xlabel='ρ(∂f/∂z) at z*', ylabel='fraction of frames ≤ x', title='contraction at the fixed point')
    ax[2].legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', required=True, help='NAME=CHECKPOINT pairs (LDEQ), e.g. 30ep=runs/demo_ldeq/last.pt')
    ap.add_argument('--video-root', help='WFLW-V-layout root (default: the synthetic set)')
    ap.add_argument('--clips', type=int, default=3); ap.add_argument('--start', type=int, default=20)
    ap.add_argument('--frames', type=int, default=16); ap.add_argument('--power-iters', type=int, default=15)
    ap.add_argument('--temperatures', nargs='*', type=float, default=[1.5, 4.0])
    ap.add_argument('--fpi', action='store_true', help='also the last model with fixed-point iteration as the converged solver')
    ap.add_argument('--out', default='out/bench/rwr_diagnostics'); ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from ldeq.checkpoint import load_model
    from ldeq.data import load_clip, read_video_ids
    from ldeq.tracking import model_input_size
    if a.video_root: root = Path(a.video_root)
    else:
        from ldeq.synth import ensure_synthetic
        root = ensure_synthetic(parts=['videos']).wflw_v
    ids = read_video_ids(root, 'hard')[:a.clips]
    pairs = [m.split('=', 1) for m in a.models]
    rows, crops = [], {}
    for name, path in pairs:
        model = load_model(path)
        size = model_input_size(model)
        if size not in crops: crops[size] = {cid: crops_of(load_clip(root, cid), a.start, a.frames, size) for cid in ids}
        rows += run_config(f'{name} (T={model.cfg.temperature:g}, {model.cfg.deq.fwd.method})', model, crops[size], None, a.power_iters)
    name, path = pairs[-1]
    for T in a.temperatures:
        model = load_model(path); set_temperature(model, T)
        rows += run_config(f'{name} (T={T:g} at test, {model.cfg.deq.fwd.method})', model, crops[model_input_size(model)], None, a.power_iters)
    if a.fpi:
        model = load_model(path)
        rows += run_config(f'{name} (T={model.cfg.temperature:g}, fpi)', model, crops[model_input_size(model)], 'fpi', a.power_iters)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows); df.to_csv(out / 'per_frame.csv', index=False)
    s = summarise(df); s.to_csv(out / 'summary.csv')
    (out / 'summary.md').write_text(f'Clips {ids}, frames {a.start}..{a.start + a.frames - 1}, root {root}\n\n' + s.to_markdown(floatfmt='.3g') + '\n')
    plot(df, out / 'diagnostics.png')
    print(s.to_markdown(floatfmt='.3g'))
    print(f'wrote {out}/per_frame.csv, summary.csv, summary.md, diagnostics.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())
