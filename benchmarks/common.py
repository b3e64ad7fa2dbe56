"""What the benchmark scripts share: timing, numbers for reports (markdown, JSON), the machine and the git state, the
command line of a run, and benchmark modules run in fresh processes."""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ldeq.models.model import LDEQ, LDEQConfig, time_forward

from ._launch import REPO, checkout_env

BENCH_DIR = REPO / 'benchmarks'
MIB = 2 ** 20
IMPLICIT_FLAT_RATIO = 1.10  # issue 2: implicit saved bytes at the largest vs smallest K differ by <= 10%


# --------------------------------------------------------------------------------------------------------- timing
def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1, sync: torch.device | None = None) -> tuple[float, list[float]]:
    "Median and all wall times (s) of `fn()` over `repeats` runs after `warmup` untimed ones."
    for _ in range(warmup): fn()
    times = []
    for _ in range(max(repeats, 1)):
        if sync is not None and sync.type == 'cuda': torch.cuda.synchronize(sync)
        t = time.perf_counter(); fn()
        if sync is not None and sync.type == 'cuda': torch.cuda.synchronize(sync)
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


# -------------------------------------------------------------------------------------------------- JSON, reports
def jsonable(v: Any) -> Any:
    "Plain JSON values (NaN / inf → None, tuples → lists, numpy / paths → Python)."
    if isinstance(v, dict): return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)): return [jsonable(x) for x in v]
    if isinstance(v, (np.generic,)): v = v.item()
    if isinstance(v, float) and not math.isfinite(v): return None
    if isinstance(v, Path): return str(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type): return jsonable(dataclasses.asdict(v))
    return v


def write_json(path: Path, obj: Any) -> None:
    "Write `obj` as JSON atomically (temp file + os.replace)."
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(jsonable(obj), indent=1, allow_nan=False))
    os.replace(tmp, path)


def fmt(v: Any, spec: str = '.2f', none: str = '–') -> str:
    "Format a number for a table (None / NaN → `none`)."
    if v is None or (isinstance(v, float) and not math.isfinite(v)): return none
    return format(v, spec)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    "A markdown table."
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(lines)


def yes_no(ok: bool | None) -> str:
    "A target verdict for the report."
    return '–' if ok is None else ('**met**' if ok else '**NOT met**')


# ---------------------------------------------------------------------------------------------- machine and git
def cpu_model() -> str:
    "The CPU model name (Linux /proc/cpuinfo), else platform.processor()."
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown'


def cpu_affinity() -> int | None:
    "CPU cores this process may use (None where the platform does not say)."
    try: return len(os.sched_getaffinity(0))
    except AttributeError: return None


def cpu_workers() -> int:
    "CPU cores this process may use (all of them where the platform does not say)."
    return cpu_affinity() or os.cpu_count() or 1


def git_state() -> dict:
    "Commit and dirty flag of the repository the benchmark runs from (None outside git)."
    def git(*a):
        r = subprocess.run(['git', *a], cwd=REPO, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    commit = git('rev-parse', 'HEAD')
    return dict(commit=commit, dirty=None if commit is None else bool(git('status', '--porcelain', '--untracked-files=no')))


def safe_git_state() -> dict:
    "git_state, or unknown where there is no git (a copied checkout on a bare image)."
    try: return git_state()
    except OSError as e: return dict(commit=None, dirty=None, git_error=f'{type(e).__name__}: {e}')


# ------------------------------------------------------------------------------------------ command line, processes
def command_line(argv: Sequence[str] | None = None, module: str | None = None) -> str:
    "This run's command: `python -m benchmarks.X ARGS` (what `python benchmarks/X.py ARGS` runs); `argv`: of `module`."
    if argv is None:
        spec = getattr(sys.modules.get('__main__'), '__spec__', None)
        module, argv = (spec.name if spec is not None else None), sys.argv[1:]
    return ' '.join([Path(sys.executable).name, *(['-m', module] if module else sys.argv[:1]), *argv])


def module_command(module: str, *args: str) -> list[str]:
    "The command that runs benchmarks/`module`.py as a module in a fresh Python (with `checkout_env()`)."
    return [sys.executable, '-m', f'{__package__}.{module}', *args]


def run_worker(kind: str, spec: dict, timeout: float | None = 1800.0) -> dict:
    "run_all's worker `kind` (memory / length) on `spec` in a fresh Python process: the JSON of its last stdout line."
    cmd = module_command('run_all', '--worker', kind, '--spec', json.dumps(spec))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=checkout_env())
    if r.returncode: raise RuntimeError(f'{kind} worker {spec} failed (exit {r.returncode}):\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def doc_parser(doc: str) -> argparse.ArgumentParser:
    "A script's argument parser: its docstring's first line as the description, the rest (as written) as the epilog."
    return argparse.ArgumentParser(description=doc.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=doc.split('\n\n', 1)[1])


def parse_names(ap: argparse.ArgumentParser, option: str, text: str | None, choices: Sequence[str], noun: str) -> tuple[str, ...]:
    "The names of a comma-separated option, all `choices` when it is not given; an argparse error for unknown or none."
    names = tuple(choices) if text is None else tuple(s.strip() for s in text.split(',') if s.strip())
    bad = [s for s in names if s not in choices]
    if bad: ap.error(f'{option}: unknown {bad}; choose from {",".join(choices)}')
    if not names: ap.error(f'{option}: no {noun} named')
    return names


def malloc_tight() -> bool:
    "glibc: serve allocations >= 64 KiB with mmap (given back to the OS on free) and trim the heap, so RSS follows live memory."
    try:
        libc = ctypes.CDLL('libc.so.6')
        ok = libc.mallopt(-3, 64 * 1024) == 1              # M_MMAP_THRESHOLD (also disables the dynamic threshold)
        libc.malloc_trim(0)
        return ok
    except (OSError, AttributeError): return False


# ------------------------------------------------------------------------------------------------------- models
def ldeq_config(preset: str, backward: str | None = None, exact_iters: bool = False) -> LDEQConfig:
    "An LDEQ preset, optionally with another backward mode and tol 0 (every solve runs exactly max_iters)."
    c = LDEQConfig.preset(preset)
    deq = c.deq
    if backward is not None: deq = dataclasses.replace(deq, backward=backward)
    if exact_iters: deq = dataclasses.replace(deq, fwd=dataclasses.replace(deq.fwd, tol=0.0))
    return dataclasses.replace(c, deq=deq)


def count_f_evals(model: LDEQ, batch: int, iters: int) -> int:
    "Evaluations of f in one `time_forward`-style forward (solver iterations + the extra step), counted by a hook."
    calls = []
    h = model.cell.register_forward_hook(lambda m, i, o: calls.append(1))
    try: time_forward(model, batch, iters, repeats=1, warmup=0)
    finally: h.remove()
    return len(calls)
