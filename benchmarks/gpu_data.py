"""gpu_check.py's `data` part: the synthetic stills and videos of the plan (the default set in the cache, or a tiny
one under --out with --quick), generated with every CPU core where missing, before the parts that need them."""
from __future__ import annotations

import json
import time

from .common import cpu_workers
from .gpu_context import Ctx, synthetic_paths, synthetic_ready, synthetic_root


def run(ctx: Ctx) -> dict:
    "The synthetic stills, then the videos, of the plan: generated with every core where missing, each timed."
    from ldeq.faces.synth import MARKER
    res = dict(root=str(synthetic_root(ctx.plan, ctx.out)), default_set=ctx.plan.default_synthetic,
               workers=cpu_workers() if ctx.plan.default_synthetic else 1, cached=synthetic_ready(ctx.plan, ctx.out))
    for part, sub in (('stills', 'wflw'), ('videos', 'wflw_v')):
        t0 = time.perf_counter()
        paths = synthetic_paths(ctx, (part,))
        res[part] = dict(path=str(getattr(paths, sub)), seconds=time.perf_counter() - t0,
                         config=json.loads((getattr(paths, sub) / MARKER).read_text())['config'])
        ctx.save(res)
    return res


def clips(v: dict) -> str:
    "The clips of a videos config: the recorded selection of the default set (pool, hard, easy) or a plain VideosConfig."
    if 'pool' in v: return f"{len(v['hard'])} + {len(v['easy'])} clips of a {v['pool']['n_pool']}-clip pool × {v['pool']['n_frames']} frames"
    return f"{v['n_hard']} + {v['n_easy']} clips × {v['n_frames']} frames"


def summary(r: dict) -> str:
    "One line of the data part."
    def part(k: str, what: str) -> str:
        return f"{what} {'cached' if r['cached'][k] else 'generated'} in {r[k]['seconds']:.0f} s" if k in r else f'no {k}'
    s, v = r.get('stills', {}).get('config'), r.get('videos', {}).get('config')
    sizes = ', '.join(([f"{s['n_train']:,} + {s['n_test']:,} stills"] if s else [])
                      + ([clips(v)] if v else []))
    return f"{sizes} under {r['root']}: {part('stills', 'stills')}, {part('videos', 'videos')} ({r['workers']} workers)"


def report(r: dict) -> str:
    "Markdown of the data part."
    paths = '; '.join(f"{k} `{r[k]['path']}`" for k in ('stills', 'videos') if k in r)
    return (f"{summary(r)}.\n\n`ldeq.faces.synth.ensure_synthetic` (stills: WFLW layout, videos: WFLW-V layout): {paths}"
            + ('' if r['default_set'] else ' (--quick: a tiny set, not the benchmark)') + '.')
