#!/usr/bin/env python
"""Validate a dataset root (official WFLW, pre-cropped WFLW or WFLW-V; detected from its files): read every
annotation, check every image / array (and with --decode every video frame), print counts and coordinate ranges, and
write a grid PNG of random samples with their landmarks drawn."""
import argparse
import json
import sys
from pathlib import Path

import cv2

from ldeq.data.formats import check_dataset


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('root', help='dataset root')
    p.add_argument('--grid', default='dataset_grid.png', help='where to write the sample grid (PNG)')
    p.add_argument('--n', type=int, default=16, help='samples in the grid')
    p.add_argument('--decode', action='store_true', help='decode every video frame (WFLW-V) to check the counts')
    p.add_argument('--seed', type=int, default=0, help='seed of the sample choice')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    a = p.parse_args(argv)
    report, grid = check_dataset(a.root, a.n, a.decode, progress=not a.no_progress, seed=a.seed)
    print(json.dumps(report, indent=1))
    Path(a.grid).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(a.grid, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)): p.error(f'cannot write {a.grid}')
    print(f'sample grid: {a.grid}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
