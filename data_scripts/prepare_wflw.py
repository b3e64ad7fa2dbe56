#!/usr/bin/env python
"""Turn an official WFLW root (WFLW_images/ + WFLW_annotations/) into the pre-cropped layout: faces cropped from their
boxes (scale 1.2) at --size, <out>/<split>/ images and <out>/<split>.txt lists (image path + 196 values in [0, 1]) for
train, test and the six attribute test subsets."""
import argparse
import json
import sys

from ldeq.data.formats import prepare_precropped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('wflw_root', help='official WFLW root holding WFLW_images/ and WFLW_annotations/')
    p.add_argument('--out', required=True, help='output root of the pre-cropped layout')
    p.add_argument('--size', type=int, default=256, help='side of the crops (px)')
    p.add_argument('--scale', type=float, default=1.2, help='crop side / longer side of the face box')
    p.add_argument('--ext', choices=['png', 'jpg'], default='png', help='image format of the crops')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    a = p.parse_args(argv)
    if a.size < 16: p.error('--size must be at least 16')
    if a.scale <= 0: p.error('--scale must be positive')
    counts = prepare_precropped(a.wflw_root, a.out, a.size, a.scale, a.ext, progress=not a.no_progress)
    print(json.dumps(counts, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
