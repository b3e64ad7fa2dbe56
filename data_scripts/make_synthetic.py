#!/usr/bin/env python
"""Generate ldeq's synthetic face benchmark: stills in the official WFLW layout (<out>/wflw) and videos in the
WFLW-V layout (<out>/wflw_v). Deterministic from --seed; a part that already exists with the same settings is kept.

Videos come one of two ways:
- --pool N (the default, N = 400; the paper's way, WFLW-V sec. 5.2): a pool of N clips of every difficulty
  (`ldeq.faces.synth.pool_clip_spec`), scored by the variance of an ensemble's predictions (`ldeq.video.selection`, default
  ensemble ldeq/assets/ensemble/), of which the --keep clips it disagrees on most become hard and the --keep it
  disagrees on least easy (default --keep 0: a quarter each, the paper's cut, 100 + 100 of 400). The selection is written to <out>/wflw_v_selection.json (or
  --selection PATH); an existing selection file made with the same settings is reused, and so is the selection
  recorded in the package (ldeq/assets/wflwv_selection_seed0.json) when the settings are its own (seed 0, the default
  pool and ensemble): then only the kept clips are rendered, and the result is the package's default set;
- --pool 0: the generator's hard and easy clips (`ldeq.faces.synth.sample_clip`), --n-hard and --n-easy of them.

A fresh held-out set in one command:  python data_scripts/make_synthetic.py --seed 1 --parts videos --out /tmp/heldout"""
import argparse
import sys
import time
from pathlib import Path

from ldeq.core.assets import selection_record
from ldeq.faces import synth
from ldeq.video.selection import SelectionConfig
from ldeq.faces.synth import PoolConfig, StillsConfig, SyntheticConfig, VideosConfig, default_synthetic_root, ensure_synthetic


def selected_videos(a, out: Path):
    "The SelectedVideosConfig of --pool: from the selection file if it matches, else scored now and written there."
    from ldeq.video.selection import Selection, SelectionConfig, make_selection
    cfg = SelectionConfig(PoolConfig(a.pool, a.frames, a.video_size, a.fps, a.seed), a.keep, a.score_every, not a.no_flip)
    path = Path(a.selection) if a.selection else out / 'wflw_v_selection.json'
    recorded = selection_record()
    if not path.is_file() and a.ensemble is None and Selection.load(recorded).config == cfg:
        print(f'selection: the one recorded in {recorded} (same seed, pool and ensemble)')
        return Selection.load(recorded).videos_config
    if path.is_file():
        sel = Selection.load(path)
        if sel.config != cfg:
            raise SystemExit(f'{path} holds a selection made with other settings ({sel.config}); delete it or pass --selection')
        print(f'selection: reusing {path}')
    else:
        t0 = time.time()
        sel = make_selection(cfg, a.ensemble, workers=a.workers, progress=not a.no_progress)
        sel.save(path)
        print(f'selection: scored {a.pool} pool clips in {time.time() - t0:.0f} s, written to {path}')
    return sel.videos_config


def main(argv=None) -> int:
    st, vi = StillsConfig(), VideosConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=str(default_synthetic_root()), help=f'output root (default: $LDEQ_CACHE/{synth.SYNTHETIC_VERSION} or ~/.cache/ldeq/{synth.SYNTHETIC_VERSION})')
    p.add_argument('--seed', type=int, default=0, help='random seed of both parts (default 0)')
    p.add_argument('--parts', nargs='+', choices=['stills', 'videos'], default=['stills', 'videos'], help='what to generate')
    p.add_argument('--n-train', type=int, default=st.n_train, help=f'training stills (default {st.n_train})')
    p.add_argument('--n-test', type=int, default=st.n_test, help=f'test stills (default {st.n_test})')
    p.add_argument('--image-size', type=int, default=st.image_size, help=f'side of the still images in px (default {st.image_size})')
    p.add_argument('--n-hard', type=int, default=vi.n_hard, help=f'hard clips without --pool (default {vi.n_hard})')
    p.add_argument('--n-easy', type=int, default=vi.n_easy, help=f'easy clips without --pool (default {vi.n_easy})')
    p.add_argument('--pool', type=int, default=PoolConfig().n_pool, help=f'pool size for the selection by ensemble disagreement (default {PoolConfig().n_pool}; 0: no pool, the generator\'s halves)')
    p.add_argument('--keep', type=int, default=SelectionConfig().keep, help=f'clips kept per half from the pool (default {SelectionConfig().keep}: a quarter, the paper\'s cut)')
    p.add_argument('--score-every', type=int, default=4, help='score every k-th frame of a pool clip (default 4)')
    p.add_argument('--no-flip', action='store_true', help='no test-time flip in the ensemble')
    p.add_argument('--ensemble', nargs='+', help='ensemble checkpoints (default ldeq/assets/ensemble/v1_*.pt)')
    p.add_argument('--selection', help='selection file (default <out>/wflw_v_selection.json)')
    p.add_argument('--frames', type=int, help=f'frames per clip (default {vi.n_frames}; with --pool {PoolConfig().n_frames})')
    p.add_argument('--video-size', type=int, default=vi.image_size, help=f'side of the video frames in px (default {vi.image_size})')
    p.add_argument('--fps', type=float, default=vi.fps, help=f'frame rate of the clips (default {vi.fps:g})')
    p.add_argument('--workers', type=int, default=2, help='worker processes (default 2)')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    a = p.parse_args(argv)
    if a.frames is None: a.frames = PoolConfig().n_frames if a.pool else vi.n_frames
    for name in ('n_train', 'n_test', 'n_hard', 'n_easy', 'workers', 'pool', 'keep'):
        if getattr(a, name) < 0: p.error(f'--{name.replace("_", "-")} must be >= 0')
    for name in ('image_size', 'video_size', 'frames'):
        if getattr(a, name) < (2 if name == 'frames' else 32): p.error(f'--{name.replace("_", "-")} is too small')
    if a.score_every < 1: p.error('--score-every must be >= 1')
    if a.pool and 2 * (a.keep or a.pool // 4) > a.pool: p.error(f'--keep {a.keep} per half does not fit in --pool {a.pool}')
    if a.pool and a.pool // 4 == 0 and not a.keep: p.error(f'--pool {a.pool} is too small to keep a quarter; pass --keep')
    out = Path(a.out)
    t0 = time.time()
    videos = (selected_videos(a, out) if a.pool and 'videos' in a.parts else
              VideosConfig(n_hard=a.n_hard, n_easy=a.n_easy, n_frames=a.frames, image_size=a.video_size, fps=a.fps, seed=a.seed))
    cfg = SyntheticConfig(StillsConfig(n_train=a.n_train, n_test=a.n_test, image_size=a.image_size, seed=a.seed), videos)
    paths = ensure_synthetic(out, cfg, parts=a.parts, workers=a.workers, progress=not a.no_progress)
    print(f'synthetic benchmark ready in {time.time() - t0:.0f} s')
    if 'stills' in a.parts: print(f'  stills (official WFLW layout): {paths.wflw}')
    if 'videos' in a.parts: print(f'  videos (WFLW-V layout):        {paths.wflw_v}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
