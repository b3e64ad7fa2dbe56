#!/usr/bin/env python
"""What the per-frame landmark files cost (issue 25: CSV vs .npy within 5% of frames/s).

    python -m benchmarks.landmark_io [--out out/bench/landmark_io] [--rows 2000] [--e2e CLIP] [--repeats 3]

rows  the time to write one tracked frame (98 landmarks, box, residual, evaluations) with `ldeq.data.videoio.landmark_writer`
      as .npy, .csv and .jsonl (flushed per row, as `ldeq-track` writes them), median of --repeats runs of --rows rows.
e2e   (with --e2e CLIP) `ldeq-track CLIP --no-overlay --landmarks X` end to end, .npy and .csv interleaved --repeats
      times in one process (one thread): frames/s of each and the ratio. Needs a quiet machine.

Writes landmark_io.json and landmark_io.md under --out.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ldeq.data.videoio import FrameRow, landmark_writer
from .common import command_line, cpu_model, md_table, write_json


def row_cost(ext: str, n: int, repeats: int) -> float:
    "Median seconds to write one row as `ext`, over `repeats` runs of `n` rows."
    g = np.random.default_rng(0)
    rows = [FrameRow(t, t / 25, g.uniform(0, 640, (98, 2)), np.array([10., 20, 200, 220]), 1e-3, 2.0, t == 0) for t in range(n)]
    times = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeats):
            w, t0 = landmark_writer(Path(d) / f'lm{ext}'), time.perf_counter()
            for r in rows: w.append(r)
            w.close(); times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def end_to_end(clip: Path, repeats: int) -> dict:
    "frames/s of ldeq-track on `clip` writing .npy and .csv, interleaved."
    from ldeq.video.track_cli import main
    fps = {'.npy': [], '.csv': []}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeats):
            for ext in fps:
                so = io.StringIO()
                with contextlib.redirect_stdout(so), contextlib.redirect_stderr(io.StringIO()):
                    rc = main([str(clip), '--no-overlay', '--no-progress', '--threads', '1', '--landmarks', str(Path(d) / f'lm{ext}')])
                assert rc == 0, so.getvalue()
                fps[ext].append(float(so.getvalue().split('frames/s')[0].rsplit('(', 1)[1]))
    return {k: statistics.median(v) for k, v in fps.items()} | {'runs': fps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='out/bench/landmark_io')
    ap.add_argument('--rows', type=int, default=2000)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--e2e', help='a clip to track end to end (.npy vs .csv)')
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = dict(command=command_line(argv, 'landmark_io'), cpu=cpu_model(), capability=torch.backends.cpu.get_cpu_capability(),
               row_ms={ext: 1e3 * row_cost(ext, a.rows, a.repeats) for ext in ('.npy', '.csv', '.jsonl')})
    lines = [f"# Landmark files: what a row costs\n\n`{res['command']}` — CPU {res['cpu']}, torch capability {res['capability']}.\n",
             md_table(['format', 'ms per frame written'], [[k, f'{v:.3f}'] for k, v in res['row_ms'].items()])]
    if a.e2e:
        e = res['e2e'] = end_to_end(Path(a.e2e), a.repeats)
        ratio = e['.csv'] / e['.npy']
        lines.append(f"\n`ldeq-track {a.e2e} --no-overlay --threads 1`, interleaved, median of {a.repeats}: .npy {e['.npy']:.1f} frames/s, "
                     f".csv {e['.csv']:.1f} frames/s: CSV costs {100 * (1 - ratio):+.1f}% of frames/s (target ≤ 5%).")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'landmark_io.json', res)
    (out / 'landmark_io.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
