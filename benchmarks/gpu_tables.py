"""gpu_check.py's `tables` part: nbs/tables.ipynb in quick mode on the device, through papermill (in this Python)."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time

import torch

from .common import REPO
from .gpu_context import Ctx, synthetic_paths


def run(ctx: Ctx) -> dict:
    "nbs/tables.ipynb in quick mode on the device, through papermill (in this Python)."
    missing = [m for m in ('papermill', 'ipykernel') if importlib.util.find_spec(m) is None]
    if missing: raise RuntimeError(f"the tables part needs {' and '.join(missing)} in {sys.executable}: pip install {' '.join(missing)}")
    paths = synthetic_paths(ctx)                           # with every core, before the notebook's first use
    out, nb = ctx.out / 'tables', ctx.out / 'tables.ipynb'
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, '-m', 'papermill', '--no-progress-bar', '--log-level', 'WARNING', str(REPO / 'nbs' / 'tables.ipynb'),
           str(nb), '-p', 'quick', 'True', '-p', 'claims', 'report',    # quick: too few stills and clips to be the claims' data
           '-p', 'device', str(ctx.device), '-p', 'out_dir', str(out), '-p', 'progress', 'False',
           '-p', 'threads', str(min(torch.get_num_threads(), 8))]
    if not ctx.plan.default_synthetic: cmd += ['-p', 'data_root', str(paths.wflw), '-p', 'video_root', str(paths.wflw_v)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)       # the worker's soft limit kills it (SIGALRM)
    secs = time.perf_counter() - t0
    if r.returncode: raise RuntimeError(f'papermill exited with status {r.returncode} after {secs:.0f} s:\n{(r.stdout + r.stderr)[-4000:]}')
    timing = {}
    if (out / 'timing.csv').is_file():
        for line in (out / 'timing.csv').read_text().splitlines()[1:]:
            k, _, v = line.partition(',')
            timing[k] = float(v)
    tables = {n: (out / f'{n}.md').read_text() for n in ('table1', 'table2', 'table3') if (out / f'{n}.md').is_file()}
    return dict(command=' '.join(cmd), seconds=secs, notebook=str(nb), out_dir=str(out), timing=timing, tables=tables,
                files=sorted(f.name for f in out.iterdir()),
                checks=dict(tables_written=all(n in tables for n in ('table1', 'table2', 'table3'))))


def summary(r: dict) -> str:
    "One line of the tables part."
    return f"Tables 1-3 written to {r['out_dir']} in {r['seconds']:.0f} s (notebook timing: " + \
        ', '.join(f'{k} {v:.0f}' for k, v in r['timing'].items()) + ')'


def report(r: dict) -> str:
    "Markdown of the tables part."
    return '\n\n'.join([f"`{r['command']}`", summary(r) + '. QUICK mode: subsets of images and videos, not the benchmark.']
                       + [f"{n}:\n\n{t.strip()}" for n, t in r['tables'].items()])
