#!/usr/bin/env python
"""Refit the face detector's box map (`ldeq.video.detect.DetectorConfig`: shift_y, width, height) on synthetic stills.

    python data_scripts/fit_detector_map.py [--n 400] [--split train]

renders the first N stills of the synthetic split (the benchmark's own generator, deterministic; nothing is cached) and
passes each through its JPEG file as the benchmark writes it, runs dlib's detector with the identity map, and prints the median landmark-extent shift, width and height over dlib's
box side beside the shipped defaults. The defaults were fitted this way on the first 400 training stills.
"""
import argparse
import dataclasses
import sys

from ldeq.core.progress import tqdm_bar
import cv2
import numpy as np

from ldeq.faces.synth import StillsConfig, render_still, still_jpeg
from ldeq.video.detect import DetectorConfig, fit_box_map


def as_written(cfg: StillsConfig, split: str, index: int):
    "Still `index` as the cached benchmark holds it (RGB, after its JPEG round trip), and its landmarks."
    img, lm = render_still(cfg, split, index)[:2]
    return cv2.imdecode(np.frombuffer(still_jpeg(cfg, split, index, img), np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy(), lm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=400, help='stills to render and detect (default 400)')
    ap.add_argument('--split', default='train', choices=['train', 'test'], help='synthetic split (default train: not the test set)')
    a = ap.parse_args(argv)
    if a.n < 1: ap.error(f'--n must be >= 1, got {a.n}')
    frames = (as_written(StillsConfig(), a.split, i) for i in range(a.n))
    fit = fit_box_map(tqdm_bar(frames, total=a.n, desc=f'{a.split} stills', unit='still'))
    d = DetectorConfig()
    print(f"{fit['detected']} of {fit['frames']} {a.split} stills with a face")
    for k in ('shift_y', 'width', 'height'):
        print(f"{k:8s} fitted {fit[k]:.3f} (IQR {fit[k + '_iqr']:.3f}); shipped {getattr(d, k):.2f}; "
              f"rounded fit {'equals' if round(fit[k], 2) == getattr(d, k) else 'DIFFERS from'} the shipped value")
    return 0


if __name__ == '__main__':
    sys.exit(main())
