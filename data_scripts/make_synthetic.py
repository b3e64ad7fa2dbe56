#!/usr/bin/env python
"""Generate ldeq's synthetic face benchmark: stills in the official WFLW layout (<out>/wflw) and videos in the
WFLW-V layout (<out>/wflw_v). Deterministic from --seed; a part that already exists with the same settings is kept."""
import argparse
import sys
import time

from ldeq.synth import StillsConfig, SyntheticConfig, VideosConfig, default_synthetic_root, ensure_synthetic


def main(argv=None) -> int:
    st, vi = StillsConfig(), VideosConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--out', default=str(default_synthetic_root()), help='output root (default: $LDEQ_CACHE/synthetic-v1 or ~/.cache/ldeq/synthetic-v1)')
    p.add_argument('--seed', type=int, default=0, help='random seed of both parts')
    p.add_argument('--parts', nargs='+', choices=['stills', 'videos'], default=['stills', 'videos'], help='what to generate')
    p.add_argument('--n-train', type=int, default=st.n_train, help='training stills')
    p.add_argument('--n-test', type=int, default=st.n_test, help='test stills')
    p.add_argument('--image-size', type=int, default=st.image_size, help='side of the still images (px)')
    p.add_argument('--n-hard', type=int, default=vi.n_hard, help='hard video clips')
    p.add_argument('--n-easy', type=int, default=vi.n_easy, help='easy video clips')
    p.add_argument('--frames', type=int, default=vi.n_frames, help='frames per clip')
    p.add_argument('--video-size', type=int, default=vi.image_size, help='side of the video frames (px)')
    p.add_argument('--fps', type=float, default=vi.fps, help='frame rate of the clips')
    p.add_argument('--workers', type=int, default=2, help='worker processes')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    a = p.parse_args(argv)
    for name in ('n_train', 'n_test', 'n_hard', 'n_easy', 'workers'):
        if getattr(a, name) < 0: p.error(f'--{name.replace("_", "-")} must be >= 0')
    for name in ('image_size', 'video_size', 'frames'):
        if getattr(a, name) < (2 if name == 'frames' else 32): p.error(f'--{name.replace("_", "-")} is too small')
    cfg = SyntheticConfig(StillsConfig(n_train=a.n_train, n_test=a.n_test, image_size=a.image_size, seed=a.seed),
                          VideosConfig(n_hard=a.n_hard, n_easy=a.n_easy, n_frames=a.frames, image_size=a.video_size,
                                       fps=a.fps, seed=a.seed))
    t0 = time.time()
    paths = ensure_synthetic(a.out, cfg, parts=a.parts, workers=a.workers, progress=not a.no_progress)
    print(f'synthetic benchmark ready in {time.time() - t0:.0f} s')
    if 'stills' in a.parts: print(f'  stills (official WFLW layout): {paths.wflw}')
    if 'videos' in a.parts: print(f'  videos (WFLW-V layout):        {paths.wflw_v}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
