"""Switches in NMF (issue 28): how much of each model's NMF comes from frames whose prediction jumps between two
readings (`ldeq.core.metrics.nmf_switch_split`), next to the low-pass flicker / jitter split (`nmf_split`).

    python -m benchmarks.flicker_switches --out benchmarks/results/flicker_switches [--limit N] [--video-root ROOT]
    python -m benchmarks.flicker_switches --out OUT --runs out/docs/tables/runs.npz --video-root ROOT   # no tracking
    (or python benchmarks/flicker_switches.py ...: the same)

Every shipped demo model runs frame by frame (the LDEQ also with RwR, k = 2) on the hard and easy clips of a WFLW-V
root (default: the synthetic default set, generated on first use), in the file boxes, through
`ldeq.paper.results.video_results`; or `--runs` reads the trajectories a tables run saved (`runs.npz`). Per video
(`ldeq.paper.results.flicker_table`): NMF (eq. 11), its switch share (switch² / NMF², the jumps above four times the
local jitter) and the low-pass split (2.5 Hz). Per model, method and subset (`switch_summary`) the table pools videos
as the NMF table does (means over videos) and gives the mean NMF², its switch part and the low-pass flicker part as
shares. Writes per_video.csv, summary.csv, summary.md and switches.png under --out. The figures notebook draws the
same figure from the runs of a tables run (`make docs`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.flicker_switches`
    import _launch; _launch.as_module(__file__)

import torch

from ldeq.core.assets import demo_checkpoints
from ldeq.models.checkpoint import load_model
from ldeq.paper.results import flicker_table, load_runs, plot_switches, save_figure, switch_summary, video_results

from .common import command_line


def tracked_runs(root: Path, subset: str, limit: int | None, progress: bool = True) -> dict:
    "The demo models' tracked runs (frame by frame; the LDEQ's RwR loops too) on `subset` of `root`."
    runs: dict = {}
    video_results({k: load_model(p) for k, p in demo_checkpoints().items()}, root, subset, ema=(), limit=limit, alpha=None,
                  progress=progress, runs=runs)
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--video-root', type=Path, help='WFLW-V-layout root (default: the synthetic default set, generated on first use)')
    ap.add_argument('--runs', type=Path, help="a tables run's runs.npz: score its trajectories, track nothing (needs --video-root)")
    ap.add_argument('--limit', type=int, help='clips per subset (default: all)')
    ap.add_argument('--subset', default='full', choices=['hard', 'easy', 'full'])
    a = ap.parse_args(argv)
    if a.limit is not None and a.limit < 1: ap.error('--limit must be >= 1')
    if a.runs and not a.video_root: ap.error('--runs needs the --video-root its clips come from')
    torch.set_num_threads(2)
    if a.video_root: root = a.video_root
    else:
        from ldeq.faces.synth import ensure_synthetic
        root = ensure_synthetic(parts=['videos']).wflw_v
    runs = load_runs(a.runs) if a.runs else tracked_runs(root, a.subset, a.limit)
    df = flicker_table(runs, root)
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / 'per_video.csv', index=False)
    t = switch_summary(df)
    t.to_csv(a.out / 'summary.csv', index=False)
    save_figure(plot_switches(t)[0].figure, a.out, 'switches')
    md = (f'# Switches in NMF\n\n`{command_line()}` on {root}. Per model, method and subset: mean NMF over videos, the '
          f'share of the mean NMF² from switches (`nmf_switch_split`: jumps above 4× the local jitter) and from the 2.5 Hz '
          f'low-pass flicker (`nmf_split`), and the fraction of (frame pair, landmark) jumps that are switches.\n\n'
          + t.to_markdown(index=False, floatfmt='.3g') + '\n\n![switches](switches.png)\n')
    (a.out / 'summary.md').write_text(md)
    print(md)
    return 0


if __name__ == '__main__':
    sys.exit(main())
