#!/usr/bin/env python
"""Validate a dataset root (official WFLW, pre-cropped WFLW or WFLW-V; detected from its files): read every
annotation, check every image / array (and with --decode every video frame), print counts and coordinate ranges, and
write a grid PNG of random samples with their landmarks drawn. On WFLW-V, which is always partial, it reports the
coverage per subset ("hard 431/500") and writes the missing or unreadable videos, with why, to a CSV."""
import argparse
import json
import sys
from pathlib import Path

import cv2

from ldeq.data.formats import Coverage, check_dataset, write_missing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('root', help='dataset root')
    p.add_argument('--grid', default='dataset_grid.png', help='where to write the sample grid (PNG)')
    p.add_argument('--n', type=int, default=16, help='samples in the grid')
    p.add_argument('--decode', action='store_true', help='decode every video frame (WFLW-V) to check the counts')
    p.add_argument('--missing', help='WFLW-V: where to write the missing videos (id, subset, reason); default: beside the grid, <grid>_missing.csv')
    p.add_argument('--seed', type=int, default=0, help='seed of the sample choice')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    a = p.parse_args(argv)
    report, grid = check_dataset(a.root, a.n, a.decode, progress=not a.no_progress, seed=a.seed)
    covs = [Coverage(s, list(report[s]['missing']), report[s]['missing']) for s in ('hard', 'easy') if s in report]
    for c in covs: report[c.subset]['missing'] = len(c.missing)          # the list goes to --missing, the count here
    print(json.dumps(report, indent=1))
    if report['layout'] == 'wflw_v':
        missing = Path(a.missing or Path(a.grid).with_name(Path(a.grid).stem + '_missing.csv'))
        missing.parent.mkdir(parents=True, exist_ok=True)
        write_missing(missing, covs)
        print(f"coverage: {report['coverage']}; missing or unreadable videos ({sum(len(c.missing) for c in covs)}): {missing}")
    Path(a.grid).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(a.grid, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)): p.error(f'cannot write {a.grid}')
    print(f'sample grid: {a.grid}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
