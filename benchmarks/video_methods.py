"""Benchmark of issue 6 (not a test; writes JSON): frame-by-frame vs Recurrence without Recurrence vs the EMA grid.

On the hard and easy videos of a WFLW-V-layout root (by default the embedded synthetic set, generated on first use
with `ldeq.faces.synth.ensure_synthetic`), with any checkpoint (`--checkpoint`: the demo LDEQ, a published
LDEQ, or anything `ldeq.models.checkpoint.load_model` reads), this measures per subset:

- frame-by-frame: the model's own solve from z = 0 on every frame (its solver, max_iters, tolerance);
- RwR (`--rwr-k`, default 2, paper sec. 6.2): warm start from the previous frame, <= k evaluations of f, adaptive stop;
- the EMA grid of appendix C (14 weights) applied to the frame-by-frame trajectories, and the setting chosen by the
  rule of issue 6 (lowest NMF with NME <= +1% of frame-by-frame);
- optionally eq. 8 (`--exact-alphas`).

NME (%) and NMF are the paper's eq. 10-11 (per video, then the mean over videos); frames/s is all frames over the wall
time of tracking them (reading and decoding frames, cropping, the model; batches of `--batch-size` videos); nfe is the
mean number of evaluations of f (the LDEQ cell) per frame. The issue's targets are checked and reported, not enforced:
RwR >= 2x the frames/s of frame-by-frame at NME within +1%, and NMF on hard at least 10% lower.

Usage: python -m benchmarks.video_methods --checkpoint CKPT [--root ROOT] [--subsets hard easy] [--rwr-k 2]
       [--batch-size 4] [--limit N] [--threads N] [--exact-alphas 1 100] [--out out/bench/video.json]
       (or python benchmarks/video_methods.py ...: the same)
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ldeq.video.filters import EMA, EMA_PAPER_WEIGHTS, select_setting
from ldeq.models.model import LDEQ
from ldeq.models.checkpoint import load_model
from ldeq.video.methods import FrameByFrame, RwR, RwRExact, method_label
from ldeq.video.tracking import VideoSource, track
from ldeq.data.videoio import read_frames
from ldeq.data.formats import wflwv_items
from ldeq.video.evaluate import evaluate_methods


def default_root() -> Path:
    "The embedded synthetic WFLW-V root (its videos generated on first use), from ldeq.faces.synth."
    from ldeq.faces.synth import ensure_synthetic
    return ensure_synthetic(parts=['videos']).wflw_v


def warm_up(model, root: Path, subset: str, batch_size: int) -> None:
    "Run a few frames once so that one-time initialisation does not count against the first method."
    it = wflwv_items(root, subset)[0]
    bb = np.load(it.bboxes, mmap_mode='r')
    frames = (f for _, f in zip(range(3), read_frames(it.video)))
    for _ in track(model, [VideoSource(frames, boxes=bb[:3])], FrameByFrame(), batch_size): pass


def row(ev) -> dict:
    "The numbers of one VideoEval."
    return dict(method=ev.method, nme=ev.nme, nmf=ev.nmf, fps=ev.fps, nfe=None if math.isnan(ev.nfe) else ev.nfe,
                videos=len(ev.table), frames=int(ev.table['frames'].sum()), seconds=float(ev.table['seconds'].sum()))


def run_subset(model, root: Path, subset: str, a) -> dict:
    "All methods on one subset, the EMA selection and the target checks."
    is_ldeq = isinstance(model, LDEQ)
    ema = [EMA(w) for w in a.ema_weights]
    methods = [FrameByFrame()] + ([RwR(a.rwr_k, a.tol)] if is_ldeq else []) + ema
    methods += [RwRExact(al, a.exact_iters) for al in (a.exact_alphas if is_ldeq else [])]
    kw = dict(batch_size=a.batch_size, limit=a.limit, progress=not a.no_progress)
    t0 = time.perf_counter()
    table, evs = evaluate_methods(model, root, subset, methods, **kw)
    wall = time.perf_counter() - t0
    labels = [method_label(m) for m in methods]
    fbf = evs[labels[0]]
    ema_labels = [method_label(m) for m in ema]
    i = select_setting([evs[l].nme for l in ema_labels], [evs[l].nmf for l in ema_labels], fbf.nme, 0.01)
    out = dict(subset=subset, wall_seconds=wall, methods=[row(evs[l]) for l in labels],
               ema_selected=None if i is None else ema_labels[i])
    if is_ldeq:
        rwr = evs[labels[1]]
        fps_ratio, d_nme, d_nmf = rwr.fps / fbf.fps, rwr.nme / fbf.nme - 1, rwr.nmf / fbf.nmf - 1
        out['rwr_vs_frame_by_frame'] = dict(fps_ratio=fps_ratio, nme_rel_change=d_nme, nmf_rel_change=d_nmf,
                                            nfe_frame_by_frame=fbf.nfe, nfe_rwr=rwr.nfe)
        targets = dict(fps_at_least_2x=fps_ratio >= 2.0, nme_within_1pct=d_nme <= 0.01)
        if subset == 'hard': targets['nmf_at_least_10pct_lower'] = d_nmf <= -0.10
        out['targets'] = targets
        if i is not None:
            sel = evs[ema_labels[i]]
            out['rwr_vs_selected_ema'] = dict(ema=ema_labels[i], nme_rel_change=rwr.nme / sel.nme - 1, nmf_rel_change=rwr.nmf / sel.nmf - 1)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--checkpoint', required=True, help='model checkpoint (ldeq format or the published LDEQ format)')
    p.add_argument('--root', help='WFLW-V-layout root (default: the embedded synthetic set from ldeq.faces.synth)')
    p.add_argument('--subsets', nargs='+', default=['hard', 'easy'], choices=['hard', 'easy', 'full'])
    p.add_argument('--rwr-k', type=int, default=2, help='RwR evaluations of f per frame (paper: 2)')
    p.add_argument('--tol', type=float, default=5e-3, help='RwR adaptive-stop tolerance (relative residual)')
    p.add_argument('--ema-weights', type=float, nargs='+', default=list(EMA_PAPER_WEIGHTS), help='EMA weights on the previous output')
    p.add_argument('--exact-alphas', type=float, nargs='*', default=[], help='also evaluate eq. 8 at these alphas (slow)')
    p.add_argument('--exact-iters', type=int, default=10, help='L-BFGS iterations per frame for eq. 8')
    p.add_argument('--batch-size', type=int, default=4, help='videos processed together (frame n of each)')
    p.add_argument('--limit', type=int, help='only the first N videos of each subset')
    p.add_argument('--threads', type=int, help='torch threads (default: torch default)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--out', default='out/bench/video.json')
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    root = Path(a.root) if a.root else default_root()
    model = load_model(a.checkpoint, a.device)
    warm_up(model, root, a.subsets[0], a.batch_size)
    t0 = time.perf_counter()
    results = [run_subset(model, root, s, a) for s in a.subsets]
    out = dict(benchmark='video (issue 6)', checkpoint=str(a.checkpoint), model=type(model).__name__, root=str(root),
               config=dict(rwr_k=a.rwr_k, tol=a.tol, batch_size=a.batch_size, limit=a.limit, ema_weights=a.ema_weights,
                           exact_alphas=a.exact_alphas, exact_iters=a.exact_iters, device=a.device),
               solver=(dict(method=model.cfg.deq.fwd.method, max_iters=model.cfg.deq.fwd.max_iters, tol=model.cfg.deq.fwd.tol)
                       if isinstance(model, LDEQ) else None),
               env=dict(torch=torch.__version__, threads=torch.get_num_threads(), python=platform.python_version(),
                        machine=platform.machine(), processor=platform.processor() or None),
               total_seconds=time.perf_counter() - t0, subsets=results)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    for r in results:
        print(f"\n[{r['subset']}]  (EMA chosen by the +1% NME rule: {r['ema_selected']})")
        print(f"{'method':<22}{'NME %':>9}{'NMF':>10}{'frames/s':>10}{'nfe':>7}")
        for m in r['methods']:
            if m['method'].startswith('ema:') and m['method'] != r['ema_selected']: continue
            nfe = '' if m['nfe'] is None else f"{m['nfe']:.2f}"
            print(f"{m['method']:<22}{m['nme']:>9.3f}{m['nmf']:>10.2f}{m['fps']:>10.1f}{nfe:>7}")
        if 'targets' in r:
            c = r['rwr_vs_frame_by_frame']
            print(f"RwR vs frame-by-frame: {c['fps_ratio']:.2f}x frames/s, NME {100 * c['nme_rel_change']:+.2f}%, "
                  f"NMF {100 * c['nmf_rel_change']:+.2f}%; targets: {r['targets']}")
    print(f'\nwrote {a.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
