"""gpu_check.py's `video` part: frames/s of RwR and frame-by-frame on the synthetic clips, batch 1 and batched over
many clips (random weights), through the `video` section's `load_clips` and `throughput` (benchmarks/bench_video.py)."""
from __future__ import annotations

from pathlib import Path

import torch

from ldeq.models.model import LDEQ, LDEQConfig

from .bench_video import load_clips, throughput
from .common import fmt, md_table
from .gpu_context import Ctx, peak_mib, reset_peak, synthetic_paths


def run(ctx: Ctx) -> dict:
    "Frames/s of RwR and frame-by-frame, batch 1 and batched over many clips (random weights)."
    from ldeq.video.methods import FrameByFrame, RwR
    p, dev = ctx.plan, ctx.device
    paths = synthetic_paths(ctx, ('videos',))
    clips = load_clips(Path(paths.wflw_v), p.video_clips, p.video_frames)
    torch.manual_seed(0)
    model = LDEQ(LDEQConfig.preset(p.preset)).to(dev).eval()
    n, single = len(clips), clips[:p.video_single]
    configs = [('frame-by-frame', FrameByFrame(), 1, single), (f'RwR k={p.rwr_k}', RwR(p.rwr_k), 1, single),
               (f'frame-by-frame, {n} clips batched', FrameByFrame(), n, clips),
               (f'RwR k={p.rwr_k}, {n} clips batched', RwR(p.rwr_k), n, clips)]
    res = dict(preset=p.preset, root=str(paths.wflw_v), frames_per_clip=p.video_frames, repeats=p.video_repeats, rows=[])
    for name, method, bs, cl in configs:
        reset_peak(dev)
        r = throughput(model, cl, [(method, bs)], p.video_repeats)[0]
        res['rows'].append(dict(name=name, batch_size=bs, clips=len(cl), peak_mib=peak_mib(dev), **r))
        ctx.save(res)
    base = res['rows'][0]['fps']
    for r in res['rows']: r['speedup'] = r['fps'] / base
    res['checks'] = dict(no_failed_frames=all(r['failed_frames'] == 0 for r in res['rows']),
                         batched_rwr_at_least_2x=None if ctx.quick else res['rows'][-1]['speedup'] >= 2.0)
    return res


def summary(r: dict) -> str:
    "One line of the video part."
    rows = r['rows']
    return (f"frame-by-frame {fmt(rows[0]['fps'], '.1f')} frames/s; "
            + '; '.join(f"{x['name']} {fmt(x['fps'], '.1f')} (×{fmt(x.get('speedup'), '.2f')})" for x in rows[1:]))


def report(r: dict) -> str:
    "Markdown of the video part."
    rows = [[x['name'], x['batch_size'], x['frames'], fmt(x['fps'], '.1f'), fmt(x['nfe_per_frame'], '.2f'),
             f"×{fmt(x.get('speedup'), '.2f')}", fmt(x['peak_mib'], '.0f'), x['failed_frames']] for x in r['rows']]
    return (f"`{r['preset']}` preset with random weights (so frame-by-frame solves may run to max_iters), synthetic clips "
            f"of {r['frames_per_clip']} frames from `{r['root']}`, decoded into memory; `ldeq.video.tracking.track` with the "
            f"given boxes (crop, model, mapping back: the CPU side is in the frames/s); median of {r['repeats']} round(s) "
            "after a 3-frame warm-up (`benchmarks/bench_video.py`'s `throughput`).\n\n"
            + md_table(['method', 'clips per batch', 'frames', 'frames/s', 'f-evals / frame', 'vs frame-by-frame',
                        'peak GPU MiB', 'failed frames'], rows))
