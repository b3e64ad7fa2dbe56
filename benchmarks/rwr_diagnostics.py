#!/usr/bin/env python
"""RwR diagnostics (issue 14) across models, σ_T temperature and solver: why RwR does or does not cut flicker.

For each configuration and each of the first `--clips` clips of a WFLW-V subset (`--subset`, default hard) (default: the synthetic one),
`ldeq.video.diagnostics.clip_diagnostics` runs over `--frames` consecutive frames from `--start` (crops in the ground-truth
boxes, as WFLW-V's are): per frame, the NME gap between warm- and cold-started solves run to relative residual 1e-5,
each solve's final residual (a frame counts as having two fixed points only when the gap is > 1% and both solves
converged; frames where a solve stopped at its cap are counted apart as unconverged), the residual after k = 1, 2, 3
warm steps, and the contraction ρ(∂f/∂z) at z*.

Configurations: every `--models` checkpoint (training length: e.g. 3, 6 and 30 epochs) at its own T and solver; the
last of them also at each `--temperatures` (T changed at test time, not retrained) and with fixed-point iteration as
the converged solver (`--fpi`). The clips run side by side, one batch per frame index. Writes per_frame.csv,
summary.csv/.md, summary_by_clip.csv (the last model at its own settings, per clip), diagnostics.png (overall, a curve
per configuration) and clips.png (per clip over time, a pool clip's ambiguity stretch shaded) under --out; the
summaries and figures are ldeq.video.diagnostics' summarise_diagnostics, plot_diagnostics and plot_clip_diagnostics."""
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
    from ldeq.core.preprocess import bbox_to_affine, crop_image, normalize_image
    frames = list(clip.frames())[start:start + n]
    boxes = clip.bboxes[start:start + n]
    return normalize_image(np.stack([crop_image(f, bbox_to_affine(b, 1.2, size), size) for f, b in zip(frames, boxes)]))


def set_temperature(model, T: float) -> None:
    "Change σ_T's temperature of every heatmap normalisation in the model (a test-time change)."
    from ldeq.models.model import HeatmapNorm
    for m in model.modules():
        if isinstance(m, HeatmapNorm): m.temperature = float(T)


def run_config(name, model, crops: dict, method: str | None, power_iters: int, start: int = 0) -> list[dict]:
    "Per-frame rows (frame numbers of the clip) of one configuration over the clips, side by side, a batch per frame."
    from ldeq.video import diagnostics as rd
    if method:                                                # the converged solver's method (fpi / anderson)
        fwd = dataclasses.replace(model.cfg.deq.fwd, method=method)
        model.cfg.deq = dataclasses.replace(model.cfg.deq, fwd=fwd)
    t0 = time.perf_counter()
    ds = rd.clip_diagnostics(model, torch.stack(list(crops.values())), power_iters=power_iters)
    rows = []
    for cid, d in zip(crops, ds):
        rows += [dict(r, frame=r['frame'] + start) for r in d.rows(config=name, clip=cid)]
        print(f'  {name} {cid}: two fixed points {d.multi_fixed_point_fraction():.0%}, unconverged {d.unconverged_fraction():.0%}, '
              f'rho median {float(d.contraction.median()):.2f}', flush=True)
    print(f'  {name}: {time.perf_counter() - t0:.0f} s for {len(crops)} clips', flush=True)
    return rows


def ambiguity_of(root: Path, clip_id: str):
    "The per-frame ambiguity envelope of a pool clip of a synthetic selected set, else None."
    import json
    from ldeq.faces.synth import MARKER, PoolConfig, pool_clip_spec, pool_index
    marker = root / MARKER
    if not (clip_id.startswith('pool_') and marker.is_file()): return None
    pool = json.loads(marker.read_text())['config'].get('pool')
    if pool is None: return None
    cfg = PoolConfig(**pool)
    return pool_clip_spec(cfg, pool_index(cfg, clip_id)).ambiguity


def plot_clips(df: pd.DataFrame, config: str, root: Path, start: int, n: int, path: Path) -> None:
    "One panel per clip of `config`: gap and ρ per frame over frames start..start+n-1, the ambiguity stretch shaded."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from ldeq.video.diagnostics import plot_clip_diagnostics
    d = df[df['config'] == config]
    clips = list(dict.fromkeys(d['clip']))
    cols = min(3, len(clips)); rows = -(-len(clips) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.2 * rows), squeeze=False)
    for i, (ax, cid) in enumerate(zip(axes.flat, clips)):
        plot_clip_diagnostics(d[d['clip'] == cid], ax, ambiguity_of(root, cid), cid, legend=i == 0)
        ax.set_xlim(start, start + n - 1)
    for ax in list(axes.flat)[len(clips):]: ax.axis('off')
    fig.suptitle(config); fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', required=True, help='NAME=CHECKPOINT pairs (LDEQ), e.g. 30ep=runs/demo_ldeq/last.pt')
    ap.add_argument('--video-root', help='WFLW-V-layout root (default: the synthetic set)')
    ap.add_argument('--subset', default='hard', choices=['hard', 'easy'], help='WFLW-V subset whose first --clips are diagnosed')
    ap.add_argument('--clips', type=int, default=3); ap.add_argument('--start', type=int, default=20)
    ap.add_argument('--frames', type=int, default=16); ap.add_argument('--power-iters', type=int, default=15)
    ap.add_argument('--temperatures', nargs='*', type=float, default=[1.5, 4.0])
    ap.add_argument('--fpi', action='store_true', help='also the last model with fixed-point iteration as the converged solver')
    ap.add_argument('--out', default='out/bench/rwr_diagnostics'); ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from ldeq.models.checkpoint import load_model
    from ldeq.data.formats import load_clip, read_video_ids
    from ldeq.video.tracking import model_input_size
    if a.video_root: root = Path(a.video_root)
    else:
        from ldeq.faces.synth import ensure_synthetic
        root = ensure_synthetic(parts=['videos']).wflw_v
    ids = read_video_ids(root, a.subset)[:a.clips]
    pairs = [m.split('=', 1) for m in a.models]
    rows, crops = [], {}
    for name, path in pairs:
        model = load_model(path)
        size = model_input_size(model)
        if size not in crops: crops[size] = {cid: crops_of(load_clip(root, cid), a.start, a.frames, size) for cid in ids}
        rows += run_config(f'{name} (T={model.cfg.temperature:g}, {model.cfg.deq.fwd.method})', model, crops[size], None, a.power_iters, a.start)
    name, path = pairs[-1]
    for T in a.temperatures:
        model = load_model(path); set_temperature(model, T)
        rows += run_config(f'{name} (T={T:g} at test, {model.cfg.deq.fwd.method})', model, crops[model_input_size(model)], None, a.power_iters, a.start)
    if a.fpi:
        model = load_model(path)
        rows += run_config(f'{name} (T={model.cfg.temperature:g}, fpi)', model, crops[model_input_size(model)], 'fpi', a.power_iters, a.start)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    from ldeq.video.diagnostics import plot_diagnostics, summarise_diagnostics
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    df = pd.DataFrame(rows); df.to_csv(out / 'per_frame.csv', index=False)
    head = f'Clips {ids} ({a.subset}), frames {a.start}..{a.start + a.frames - 1}, root {root}\n\n'
    s = summarise_diagnostics(df); s.to_csv(out / 'summary.csv')
    main_cfg = next(c for c in dict.fromkeys(df['config']) if c.startswith(f'{name} (') and 'at test' not in c and 'fpi' not in c)
    per_clip = summarise_diagnostics(df[df['config'] == main_cfg], by='clip'); per_clip.to_csv(out / 'summary_by_clip.csv')
    (out / 'summary.md').write_text(head + s.to_markdown(floatfmt='.3g') + f'\n\nPer clip, {main_cfg}:\n\n'
                                    + per_clip.to_markdown(floatfmt='.3g') + '\n')
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    plot_diagnostics(df, axes); fig.tight_layout(); fig.savefig(out / 'diagnostics.png', dpi=120); plt.close(fig)
    plot_clips(df, main_cfg, root, a.start, a.frames, out / 'clips.png')
    print(s.to_markdown(floatfmt='.3g'))
    print(f'wrote {out}/per_frame.csv, summary.csv, summary_by_clip.csv, summary.md, diagnostics.png, clips.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())
