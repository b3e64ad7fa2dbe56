#!/usr/bin/env python
"""How well the tracker's per-frame confidence signals rank its per-frame error (issue 25, step 3).

    python -m benchmarks.track_confidence [--out out/bench/track_confidence] [--video-root ROOT] [--limit N]

For every clip of the hard and easy subsets of a WFLW-V-layout root (default: the synthetic default set), the shipped
demo LDEQ tracks in the file boxes frame by frame and with RwR (k = 2), and each frame's NME (%, inter-ocular) is set
against the signals `ldeq-track` writes: the solver's relative residual ‖f(z) − z‖ / ‖f(z)‖ and its evaluations of f.
Reported per method and subset (frames pooled over clips): Spearman ρ between signal and NME, and the mean NME of the
10% of frames the signal flags (highest residual) against the other 90%. Writes confidence.csv/.md under --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from ldeq.core.assets import demo_checkpoints
from ldeq.core.metrics import nme
from ldeq.core.progress import tqdm_bar
from ldeq.data.formats import load_clip, read_video_ids
from ldeq.data.videoio import read_frames
from ldeq.models.checkpoint import load_model
from ldeq.video.methods import method_label
from ldeq.video.tracking import VideoSource, track_videos

METHODS = ('frame-by-frame', 'rwr:2')


def frame_rows(model, root: Path, subset: str, method: str, limit: int | None) -> pd.DataFrame:
    "One row per frame of every clip of `subset`: NME (%), residual, f-evaluations."
    rows = []
    for cid in tqdm_bar(read_video_ids(root, subset)[:limit], desc=f'{method} {subset}', unit='clip'):
        clip = load_clip(root, cid, check_count=False)
        r = track_videos(model, [VideoSource(read_frames(clip.video), boxes=clip.bboxes, name=cid)], method)[0]
        e = 100 * nme(r.landmarks, clip.landmarks)
        rows += [dict(method=method, subset=subset, clip=cid, frame=t, nme=float(e[t]), residual=float(r.residual[t]),
                      nfe=float(r.nfe[t])) for t in range(len(e))]
    return pd.DataFrame(rows)


def signal_quality(d: pd.DataFrame, signal: str) -> dict:
    "Spearman ρ of `signal` against NME, and the NME of the 10% frames with the highest signal against the rest."
    rho = spearmanr(d[signal], d['nme']).statistic if d[signal].nunique() > 1 else float('nan')
    cut = d[signal].quantile(0.9)
    top = d[d[signal] > cut] if (d[signal] > cut).any() else d[d[signal] >= cut]
    rest = d.drop(top.index)
    return dict(signal=signal, frames=len(d), spearman=float(rho), nme_flagged=float(top['nme'].mean()),
                nme_rest=float(rest['nme'].mean()) if len(rest) else float('nan'), flagged=len(top))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='out/bench/track_confidence')
    ap.add_argument('--video-root', help='WFLW-V-layout root (default: the synthetic default set, generated on first use)')
    ap.add_argument('--limit', type=int, help='clips per subset (default: all)')
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    if a.video_root: root = Path(a.video_root)
    else:
        from ldeq.faces.synth import ensure_synthetic
        root = ensure_synthetic(parts=['videos']).wflw_v
    model = load_model(demo_checkpoints()['ldeq'])
    df = pd.concat([frame_rows(model, root, s, m, a.limit) for m in METHODS for s in ('hard', 'easy')], ignore_index=True)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / 'per_frame.csv', index=False)
    rows = [dict(method=m, subset=s, **signal_quality(d, sig)) for (m, s), d in df.groupby(['method', 'subset'], sort=False)
            for sig in ('residual', 'nfe')]
    t = pd.DataFrame(rows)
    t.to_csv(out / 'confidence.csv', index=False)
    md = (f'Per-frame NME (%) of the demo LDEQ against its confidence signals, {root} (file boxes); Spearman ρ over all '
          f'frames of a subset; NME of the 10% frames with the highest signal vs the rest.\n\n' + t.to_markdown(index=False, floatfmt='.3g') + '\n')
    (out / 'confidence.md').write_text(md)
    print(md)
    print(f'wrote {out}/per_frame.csv, confidence.csv, confidence.md ({method_label(METHODS[1])} and {METHODS[0]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
