"""Switches in NMF (issue 28): how much of each model's NMF comes from frames whose prediction jumps between two
readings (`ldeq.core.metrics.nmf_switch_split`), next to the low-pass flicker / jitter split (`nmf_split`).

    python -m benchmarks.flicker_switches --out benchmarks/results/flicker_switches [--limit N] [--video-root ROOT]
    (or python benchmarks/flicker_switches.py ...: the same)

Every shipped demo model runs frame by frame (the LDEQ also with RwR, k = 2) on the hard and easy clips of a WFLW-V
root (default: the synthetic default set, generated on first use), in the file boxes, through
`ldeq.video.evaluate.evaluate_methods`. Per video: NMF (eq. 11), its switch share (switch² / NMF², the jumps above
four times the local jitter) and the low-pass split's jitter share (2.5 Hz). Per model, method and subset the table
pools videos as the NMF table does (means over videos) and gives the mean NMF², its switch part and the low-pass
flicker part as shares. Writes per_video.csv, summary.csv, summary.md and switches.png (mean NMF² per model, method
and subset, stacked: switches / steady change, the low-pass flicker share marked) under --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.flicker_switches`
    import _launch; _launch.as_module(__file__)

import numpy as np
import pandas as pd
import torch

from ldeq.core.assets import demo_checkpoints
from ldeq.core.metrics import nmf_split, nmf_switch_split
from ldeq.data.formats import load_clip
from ldeq.data.videoio import video_info
from ldeq.models.checkpoint import load_model
from ldeq.video.evaluate import evaluate_methods

from .common import command_line

LABELS = {'ldeq': 'LDEQ', 'stacked_hourglass': 'Stacked-Hourglass', 'unet': 'UNet'}
METHODS = {'ldeq': ('frame-by-frame', 'rwr:2'), 'stacked_hourglass': ('frame-by-frame',), 'unet': ('frame-by-frame',)}


def per_video(root: Path, subsets, limit: int | None, progress: bool = True) -> pd.DataFrame:
    "One row per model, method, subset and video: NMF, its switch split and its low-pass split."
    rows = []
    for kind, path in demo_checkpoints().items():
        model = load_model(path)
        for s in subsets:
            _, evs = evaluate_methods(model, root, s, METHODS[kind], limit=limit, keep_predictions=True, progress=progress)
            for method, ev in evs.items():
                for vid, pred in ev.predictions.items():
                    clip = load_clip(root, vid, check_count=False)
                    sw, lp = nmf_switch_split(pred, clip.landmarks), nmf_split(pred, clip.landmarks, video_info(clip.video).fps)
                    rows.append(dict(model=LABELS[kind], method=method, subset=s, id=vid, nmf=sw.nmf, switch=sw.switch,
                                     steady=sw.steady, switch_share=sw.switch_share, switch_rate=sw.rate,
                                     lowpass_flicker=lp.flicker, lowpass_jitter_share=lp.jitter_share))
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    "Per model, method and subset: videos, mean NMF, and the shares of the mean NMF² from switches and from the low-pass flicker."
    g = df.assign(nmf2=df.nmf ** 2, sw2=df.switch ** 2, lp2=df.lowpass_flicker ** 2).groupby(['model', 'method', 'subset'], sort=False)
    t = g.agg(videos=('id', 'size'), nmf=('nmf', 'mean'), nmf2=('nmf2', 'mean'), sw2=('sw2', 'mean'), lp2=('lp2', 'mean'),
              switch_rate=('switch_rate', 'mean')).reset_index()
    t['switch_share'], t['lowpass_flicker_share'] = t.sw2 / t.nmf2, t.lp2 / t.nmf2
    return t.drop(columns=['sw2', 'lp2'])


def plot_switches(summary: pd.DataFrame, path: Path) -> None:
    "Mean NMF² per model, method and subset, stacked: switches (red) and steady change (blue); a black tick at the low-pass flicker part."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    subsets = list(dict.fromkeys(summary.subset))
    fig, axes = plt.subplots(1, len(subsets), figsize=(4.2 * len(subsets), 3.8), squeeze=False)
    for ax, s in zip(axes[0], subsets):
        t = summary[summary.subset == s]
        x, labels = np.arange(len(t)), [f'{m}\n{me}' for m, me in zip(t.model, t.method)]
        sw2 = t.nmf2 * t.switch_share
        ax.bar(x, sw2, color='C3', label='switches²')
        ax.bar(x, t.nmf2 - sw2, bottom=sw2, color='C0', alpha=0.7, label='steady²')
        ax.scatter(x, t.nmf2 * t.lowpass_flicker_share, marker='_', s=400, color='k', zorder=3, label='low-pass flicker² (2.5 Hz)')
        for xi, v, sh in zip(x, t.nmf2, t.switch_share): ax.annotate(f'{sh:.0%}', (xi, v), ha='center', va='bottom', fontsize=8)
        ax.set_xticks(x, labels, fontsize=7); ax.set_title(f'{s} clips: share of NMF² from switches'); ax.set_ylabel('mean NMF² over videos')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--video-root', type=Path, help='WFLW-V-layout root (default: the synthetic default set, generated on first use)')
    ap.add_argument('--limit', type=int, help='clips per subset (default: all)')
    ap.add_argument('--subsets', default='hard,easy')
    a = ap.parse_args(argv)
    if a.limit is not None and a.limit < 1: ap.error('--limit must be >= 1')
    torch.set_num_threads(2)
    if a.video_root: root = a.video_root
    else:
        from ldeq.faces.synth import ensure_synthetic
        root = ensure_synthetic(parts=['videos']).wflw_v
    df = per_video(root, [s for s in a.subsets.split(',') if s], a.limit)
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / 'per_video.csv', index=False)
    t = summarise(df)
    t.to_csv(a.out / 'summary.csv', index=False)
    plot_switches(t, a.out / 'switches.png')
    md = (f'# Switches in NMF\n\n`{command_line()}` on {root}. Per model, method and subset: mean NMF over videos, the '
          f'share of the mean NMF² from switches (`nmf_switch_split`: jumps above 4× the local jitter) and from the 2.5 Hz '
          f'low-pass flicker (`nmf_split`), and the fraction of (frame pair, landmark) jumps that are switches.\n\n'
          + t.to_markdown(index=False, floatfmt='.3g') + '\n\n![switches](switches.png)\n')
    (a.out / 'summary.md').write_text(md)
    print(md)
    return 0


if __name__ == '__main__':
    sys.exit(main())
