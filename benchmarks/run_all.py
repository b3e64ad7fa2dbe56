"""All of ldeq's performance numbers in one run (issue 8): writes `run_all.json` and `report.md` under `--out`.

Every section runs in the same process, one after the other, with `torch.set_num_threads(--threads)` (default 2), so
that the ratios it reports (ours / torchdeq, RwR / frame-by-frame, ...) are measured side by side on the same machine
in the same state. Timings are the median of `repeats` (3; solvers 5; 1 with --quick) runs after a warm-up. Machine
info (platform, CPU model and count, torch / torchdeq versions, threads, device name, load average before and after,
git commit) is recorded with the numbers. Run it on a quiet machine: with another job on the same cores, torch's
worker threads wait on each other and small-op-heavy timings (batch 1, the tiny preset) get many times slower; the
report flags a load average above 0.5 at the start.

Sections (select with `--sections`, default all of them; `gpu` only with `--device cuda`):

solvers  Solver speed vs torchdeq on the problems of `benchmarks/solvers.py` (imported from there, not copied): a DEQ
         training step (forward solve, loss, implicit backward) with ours and with torchdeq, Anderson on both, at
         relative tolerances 1e-3 and 1e-5. Reports f-evaluations, wall times (ms), gradient error vs a float64
         reference; target (issue 2): ours <= torchdeq's f-evaluations and <= 1.0x its median time at every case.
         Always on CPU (the problems are built on CPU).
memory   The data behind the paper's Fig. 1: one training step of LDEQ (`implicit` and `unrolled` backward) at K solver
         iterations and of a Stacked-Hourglass with K stacks. Each row runs in a fresh subprocess: a warm-up step,
         `repeats` timed steps (median = time per step), then one step measured by `ldeq.memory.training_memory`:
         the bytes autograd saves for backward (exact, deterministic) and the peak-RSS growth of the step (Linux VmHWM
         reset through /proc/self/clear_refs; CUDA: max_memory_allocated). Before that step glibc is told to serve
         allocations >= 64 KiB with mmap and to trim its heap, so that memory freed by earlier steps cannot hide the
         peak. Targets: LDEQ implicit saved bytes flat in K (max/min <= 1.10, issue 2), unrolled and
         Stacked-Hourglass growing.
video    Tracking throughput on 4 synthetic videos of 80 frames (the WFLW-V-layout set of
         `ldeq.synth.ensure_synthetic`, generated on first use, or `--video-root`), decoded into memory first so that
         only tracking is timed (cropping, the model, mapping back; the given boxes): frame-by-frame (batch 1), RwR k=2
         (batch 1) and RwR batched over the 4 videos, all through `ldeq.tracking.track`.
         Reports frames/s and f-evaluations per frame; target (issue 6): RwR >= 2x the frames/s of frame-by-frame.
         Then memory vs video length: RwR on a 100-frame and a 10,000-frame stream (a generator cycling one synthetic
         clip with a little noise, boxes cycled lazily: nothing of length T is ever materialised), each in a fresh
         subprocess, after a 20-frame warm-up; the peak-RSS growth while streaming must not grow with the length.
         The length test uses the `tiny` preset with random weights to keep 10,000 frames affordable on 2 cores:
         boundedness is a property of the streaming code, not of the model's width.
train    Training images/s per speed lever (fp32, bf16 autocast, channels_last; LDEQ implicit / JFB, forward caps 8
         and 4) and the input pipeline alone: `benchmarks/train_speed.py` (its own script; see there). Target
         (issue 13): adopted demo recipes >= 3x (LDEQ) and >= 1.5x (baselines) the images/s of the old ones.
cost     Model cost of the `small` and `paper` presets: parameters, conv FLOPs of the stem and of one f-evaluation
         (`ldeq.model.model_cost`, counted on meta tensors), ms per image of an inference forward with exactly 5 solver
         iterations (`ldeq.model.time_forward`, median of single timed runs; the f-evaluations are counted with a
         hook), the achieved GFLOP/s, and its ratio to the machine's measured float32 matmul peak (the best median
         GFLOP/s of n x n matmuls, n = 1024, 2048, 4096; 2 n^3 FLOPs). The FLOP count covers convolutions only (norms
         and activations are not counted).
gpu      (`--device cuda` only) paper preset: training images/s (`ldeq.train.train_step`, batch 16, fp32 and bf16
         autocast), inference frames/s with RwR batched over videos (and frame-by-frame batched for reference), and
         the peak GPU memory (torch.cuda.max_memory_allocated) of each.

Models: `--checkpoint` (default ldeq/assets/demo_ldeq.pt if it exists; not with --quick) is used for the video
throughput; without one a randomly initialised `small` LDEQ is used and the report says so (an untrained model solves
differently: its frame-by-frame solves run to max_iters). A `paper`-preset checkpoint costs ~50x more per frame on CPU:
check `--estimate` and shorten with `--video-frames`. Memory and cost use randomly initialised models (weights do not
change memory, and the cost forward runs a fixed number of iterations).

Each section prints an estimate of its time before it starts (from FLOP counts and a short calibration of this
machine's conv speed) and its actual time after. `--estimate` prints the plan and the estimates without running.
JSON is rewritten after every section, so a long run that fails late keeps what it measured; a failing section is
recorded with its traceback and the run goes on (exit status 1 at the end).

Usage: python benchmarks/run_all.py [--out out/bench] [--quick] [--sections solvers,memory,video,cost]
       [--device cpu|cuda] [--threads 2] [--repeats 3] [--checkpoint CKPT] [--video-root ROOT] [--video-frames N]
       [--estimate] [--no-progress]
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path: sys.path.insert(0, str(BENCH_DIR))   # benchmarks/solvers.py, benchmarks/video.py

import ldeq
from ldeq.baselines import StackedHourglass, StackedHourglassConfig
from ldeq.memory import reset_peak_rss, rss_status, training_memory
from ldeq.model import LDEQ, LDEQConfig, model_cost, time_forward
from tqdm.auto import tqdm

SECTIONS = ('solvers', 'memory', 'video', 'cost', 'train', 'gpu')
MIB = 2 ** 20
DEFAULT_CHECKPOINT = Path(ldeq.__file__).parent / 'assets' / 'demo_ldeq.pt'
# Seconds to build problem A / B / C of benchmarks/solvers.py and its float64 reference on 2 quiet cores
# (from its recorded wall time minus its timed runs); used for the estimate only.
SOLVER_SETUP_S = {'A': 10.0, 'B': 7.0, 'C': 16.0}
SUBPROCESS_S = 3.0          # start-up of a worker subprocess (python, torch, ldeq imports) on 2 cores
FRAME_OVERHEAD_S = 4e-3     # per-frame tracking cost outside the model (crop, normalisation, mapping back)
SYNTHETIC_VIDEOS_S = 180.0  # generating the synthetic video set when it is not cached yet
BATCH1_SLOWDOWN = 1.3       # batch-1 convolutions run this much slower than the batch-4 calibration (measured, small)
LENGTH_TOLERANCE_MIB = 8.0  # "does not grow": peak growth at the long length <= that at the short one + this
IMPLICIT_FLAT_RATIO = 1.10  # issue 2: implicit saved bytes at the largest vs smallest K differ by <= 10%


# ------------------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class Plan:
    "Sizes of every section: `FULL` (<= 15 minutes on 2 quiet cores) or `QUICK` (a smoke test, ~1 minute)."
    repeats: int                                  # timed runs per measurement, after a warm-up
    solver_repeats: int                           # timed runs per case of the solver benchmark
    solver_problems: tuple[str, ...]              # problems of benchmarks/solvers.py
    solver_tols: tuple[float, ...]
    memory_preset: str
    memory_batch: int
    memory_iters: tuple[int, ...]                 # LDEQ solver iterations K
    memory_stacks: tuple[int, ...]                # Stacked-Hourglass stacks K
    video_preset: str                             # the model when no checkpoint is given (random weights)
    video_videos: int                             # videos of the throughput test
    video_frames: int                             # frames of each
    video_batch: int                              # videos per batch for the batched RwR
    rwr_k: int
    length_preset: str
    lengths: tuple[int, ...]                      # stream lengths of the memory-vs-length test (short, long)
    cost_cases: tuple[tuple[str, int, int], ...]  # (preset, batch, repeats); repeats 0 = count, don't time
    matmul_sizes: tuple[int, ...]                 # n of the n × n float32 matmuls; the peak is the best of them
    gpu_preset: str
    gpu_batch: int
    gpu_steps: int
    gpu_videos: int


FULL = Plan(repeats=3, solver_repeats=5, solver_problems=('A', 'B', 'C'), solver_tols=(1e-3, 1e-5),
            memory_preset='small', memory_batch=4, memory_iters=(2, 4, 8, 16, 32), memory_stacks=(2, 4, 8),
            video_preset='small', video_videos=4, video_frames=80, video_batch=4, rwr_k=2,
            length_preset='tiny', lengths=(100, 10_000),
            cost_cases=(('small', 1, 5), ('small', 16, 3), ('paper', 1, 3)), matmul_sizes=(1024, 2048, 4096),
            gpu_preset='paper', gpu_batch=16, gpu_steps=5, gpu_videos=8)
QUICK = Plan(repeats=1, solver_repeats=1, solver_problems=('B',), solver_tols=(1e-3,),
             memory_preset='tiny', memory_batch=2, memory_iters=(2, 8), memory_stacks=(2, 4),
             video_preset='tiny', video_videos=2, video_frames=8, video_batch=2, rwr_k=2,
             length_preset='tiny', lengths=(100, 1000),
             cost_cases=(('small', 1, 1), ('small', 16, 1), ('paper', 1, 0)), matmul_sizes=(512, 1024),
             gpu_preset='tiny', gpu_batch=4, gpu_steps=2, gpu_videos=2)


@dataclass
class Context:
    "What every section needs: the plan, the device, where to write, and the shared calibration."
    plan: Plan
    device: torch.device
    threads: int
    out: Path
    progress: bool
    checkpoint: Path | None
    video_root: Path | None
    quick: bool                                   # --quick: no default checkpoint (the tiny random model instead)
    gflops: float = 0.0                           # measured conv GFLOP/s of this machine (estimates only)


# ----------------------------------------------------------------------------------------------------- utilities
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


def jsonable(v: Any) -> Any:
    "Plain JSON values (NaN / inf → None, tuples → lists, numpy / paths → Python)."
    if isinstance(v, dict): return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)): return [jsonable(x) for x in v]
    if isinstance(v, (np.generic,)): v = v.item()
    if isinstance(v, float) and not math.isfinite(v): return None
    if isinstance(v, Path): return str(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type): return jsonable(dataclasses.asdict(v))
    return v


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


def cpu_model() -> str:
    "The CPU model name (Linux /proc/cpuinfo), else platform.processor()."
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown'


def git_state() -> dict:
    "Commit and dirty flag of the repository the benchmark runs from (None outside git)."
    def git(*a):
        r = subprocess.run(['git', *a], cwd=BENCH_DIR.parent, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    commit = git('rev-parse', 'HEAD')
    return dict(commit=commit, dirty=None if commit is None else bool(git('status', '--porcelain', '--untracked-files=no')))


def machine_info(device: torch.device) -> dict:
    "Platform, CPU, versions, threads and device of this run."
    from importlib.metadata import PackageNotFoundError, version
    try: tdq = version('torchdeq')
    except PackageNotFoundError: tdq = None
    try: affinity = len(os.sched_getaffinity(0))
    except AttributeError: affinity = None
    dev_name = torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_model()
    return dict(platform=platform.platform(), machine=platform.machine(), python=platform.python_version(),
                cpu=cpu_model(), cpu_count=os.cpu_count(), cpu_affinity=affinity, torch=torch.__version__,
                torchdeq=tdq, numpy=np.__version__, threads=torch.get_num_threads(), device=str(device),
                device_name=dev_name, cuda_available=torch.cuda.is_available(), loadavg_before=os.getloadavg(),
                **git_state())


def ldeq_config(preset: str, backward: str | None = None, exact_iters: bool = False) -> LDEQConfig:
    "An LDEQ preset, optionally with another backward mode and tol 0 (every solve runs exactly max_iters)."
    c = LDEQConfig.preset(preset)
    deq = c.deq
    if backward is not None: deq = dataclasses.replace(deq, backward=backward)
    if exact_iters: deq = dataclasses.replace(deq, fwd=dataclasses.replace(deq.fwd, tol=0.0))
    return dataclasses.replace(c, deq=deq)


def calibrate_gflops(device: torch.device, runs: int = 7) -> float:
    "Best GFLOP/s of a `small` f-evaluation at batch 4 (no grad), with the set threads or with 1: the rate the estimates assume."
    cfg = LDEQConfig.preset('small')
    torch.manual_seed(0)
    m = LDEQ(cfg).to(device).eval()
    z = torch.zeros(4, cfg.z_width, cfg.heatmap_size, cfg.heatmap_size, device=device)
    x = torch.randn(4, cfg.injection_width, cfg.heatmap_size, cfg.heatmap_size, device=device)
    threads, best = torch.get_num_threads(), math.inf
    try:
        for n in sorted({threads, 1}, reverse=True):     # 1 thread too: a shared machine would otherwise give a useless rate
            torch.set_num_threads(n)
            with torch.no_grad(): _, ts = median_time(lambda: m.cell(z, x), runs, 2, device)
            best = min(best, min(ts))
    finally: torch.set_num_threads(threads)
    return 4 * model_cost(cfg).cell_flops / best / 1e9


# ---------------------------------------------------------------------------------------------- worker processes
def run_worker(kind: str, spec: dict, timeout: float | None = 1800.0) -> dict:
    "Run `kind` (memory / length) with `spec` in a fresh Python process; its last stdout line is the JSON result."
    cmd = [sys.executable, str(Path(__file__).resolve()), '--worker', kind, '--spec', json.dumps(spec)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode: raise RuntimeError(f'{kind} worker {spec} failed (exit {r.returncode}):\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def worker_main(kind: str, spec: dict) -> None:
    "Entry point of a worker subprocess: print one JSON line."
    torch.set_num_threads(spec['threads'])
    out = {'memory': memory_worker, 'length': length_worker}[kind](spec)
    print(json.dumps(jsonable(out)))


# -------------------------------------------------------------------------------------------------------- solvers
def solvers_estimate(p: Plan) -> float:
    "Seconds: problem set-up + (repeats + warm-up) × both libraries' step times recorded in results/solvers.json."
    f = BENCH_DIR / 'results' / 'solvers.json'
    step = {}
    if f.is_file():
        for r in json.loads(f.read_text())['results']:
            step[(r['problem'], r['tol'])] = (r['ours']['total_ms'] + r['torchdeq']['total_ms']) / 1e3
    s = sum(SOLVER_SETUP_S.get(n, 10.0) for n in p.solver_problems)
    return s + sum((p.solver_repeats + 1) * step.get((n, t), 5.0) for n in p.solver_problems for t in p.solver_tols)


def solvers_section(ctx: Context) -> dict:
    "benchmarks/solvers.py's problems, ours vs torchdeq, side by side (CPU)."
    try: import torchdeq  # noqa: F401
    except ImportError: raise RuntimeError('the solvers section needs torchdeq: .venv/bin/pip install torchdeq torch==2.13.0') from None
    import solvers as sb                     # benchmarks/solvers.py
    p = ctx.plan
    bar = tqdm(total=len(p.solver_problems) * len(p.solver_tols) * 2 * (p.solver_repeats + 1), desc='solvers', disable=not ctx.progress)
    results = []
    for name in p.solver_problems:
        prob = sb.make_problem(name)
        ref = sb.reference(prob)
        for tol in p.solver_tols:
            r = sb.bench(prob, ref, tol, p.solver_repeats, bar)
            results.append(dict(problem=name, tol=tol, norm=prob.norm, norm_note=prob.norm_note,
                                ref_fwd_residual=ref['fwd_residual'], ref_adjoint_residual=ref['adjoint_residual'], **r))
    bar.close()
    for r in results:
        o, t = r['ours'], r['torchdeq']
        stalled = not t['converged']
        r['ratios'] = dict(fwd_f=o['fwd_f'] / t['fwd_f'], total_ms=o['total_ms'] / t['total_ms'],
                           fwd_ms=o['fwd_ms'] / t['fwd_ms'], bwd_ms=o['bwd_ms'] / t['bwd_ms'])
        r['targets'] = dict(f_evals_le_torchdeq=o['fwd_f'] <= t['fwd_f'], time_le_1x=o['total_ms'] <= t['total_ms'],
                            converges_where_torchdeq_stalls=(o['converged'] if stalled else None))
    return dict(device='cpu', batch=sb.B, max_iters=sb.MAX_ITERS, repeats=p.solver_repeats, results=results, table=sb.table(results))


def solvers_report(s: dict) -> str:
    "Markdown of the solvers section."
    rows = []
    for r in s['results']:
        o, t, g = r['ours'], r['torchdeq'], r['targets']
        rows.append([r['problem'], f"{r['tol']:g}", f"{o['fwd_f']} / {t['fwd_f']}", f"{o['total_ms']:.1f} / {t['total_ms']:.1f}",
                     f"{r['ratios']['total_ms']:.2f}", f"{o['grad_rel_err']:.1e} / {t['grad_rel_err']:.1e}",
                     f"{'yes' if o['converged'] else 'NO'} / {'yes' if t['converged'] else 'NO'}",
                     yes_no(g['f_evals_le_torchdeq'] and g['time_le_1x'] and g['converges_where_torchdeq_stalls'] is not False)])
    ratios = [r['ratios']['total_ms'] for r in s['results']]
    met = all(r['targets']['f_evals_le_torchdeq'] and r['targets']['time_le_1x']
              and r['targets']['converges_where_torchdeq_stalls'] is not False for r in s['results'])
    summary = (f"- ours / torchdeq step time: median ×{statistics.median(ratios):.2f} (×{min(ratios):.2f} – ×{max(ratios):.2f}) "
               f"over {len(ratios)} cases; target at every case: {yes_no(met)}")
    return '\n\n'.join([
        f"A DEQ training step (forward solve + implicit backward), Anderson, batch {s['batch']}, max {s['max_iters']} "
        f"iterations, median of {s['repeats']} runs after a warm-up; ours / torchdeq side by side. "
        "Target (issue 2): ours ≤ torchdeq's forward f-evaluations and ≤ 1.0× its median step time, at every case.",
        md_table(['problem', 'tol', 'fwd f-evals ours / torchdeq', 'step ms ours / torchdeq', 'time ratio',
                  'grad rel err ours / torchdeq', 'converged ours / torchdeq', 'target'], rows), summary,
        '<details><summary>Full table (benchmarks/solvers.py format)</summary>\n\n' + s['table'] + '\n\n</details>'])


# --------------------------------------------------------------------------------------------------------- memory
def _memory_model(spec: dict) -> tuple[torch.nn.Module, dict | None]:
    "The model (and forward kwargs) of one memory row."
    torch.manual_seed(spec['seed'])
    if spec['model'] == 'ldeq':
        return LDEQ(ldeq_config(spec['preset'], spec['backward'], exact_iters=True)), dict(max_iters=spec['k'])
    return StackedHourglass(StackedHourglassConfig.preset(spec['preset'], n_stacks=spec['k'])), None


def malloc_tight() -> bool:
    "glibc: serve allocations >= 64 KiB with mmap (given back to the OS on free) and trim the heap, so RSS follows live memory."
    try:
        libc = ctypes.CDLL('libc.so.6')
        ok = libc.mallopt(-3, 64 * 1024) == 1              # M_MMAP_THRESHOLD (also disables the dynamic threshold)
        libc.malloc_trim(0)
        return ok
    except (OSError, AttributeError): return False


def memory_worker(spec: dict) -> dict:
    "One row, in a fresh process: median time of `repeats` steps after a warm-up, then one step measured for memory."
    model, kw = _memory_model(spec)
    step = lambda: training_memory(model, spec['batch'], kw, spec['seed'], spec['device'])
    first = step()                                                   # warm-up: one-time initialisation
    times = [step().seconds for _ in range(spec['repeats'])]
    gc.collect()
    tight = malloc_tight()                                           # so that freed warm-up memory cannot hide the peak
    m = step()
    return dict(saved_mib=m.saved_mib, saved_tensors=m.saved_tensors,
                peak_rss_mib=None if m.peak_rss_delta is None else m.peak_rss_delta / MIB,
                first_step_peak_rss_mib=None if first.peak_rss_delta is None else first.peak_rss_delta / MIB,
                cuda_peak_mib=None if m.cuda_peak_bytes is None else m.cuda_peak_bytes / MIB, malloc_tight=tight,
                first_step_s=first.seconds, step_s=statistics.median(times), all_step_s=times,
                params=sum(p.numel() for p in model.parameters()))


def _memory_specs(ctx: Context) -> list[dict]:
    "One spec per row of the memory table."
    p = ctx.plan
    base = dict(preset=p.memory_preset, batch=p.memory_batch, seed=0, device=str(ctx.device), repeats=p.repeats, threads=ctx.threads)
    specs = [dict(base, model='ldeq', backward=bw, k=k) for bw in ('implicit', 'unrolled') for k in p.memory_iters]
    return specs + [dict(base, model='stacked_hourglass', backward=None, k=k) for k in p.memory_stacks]


def _flops(build: Callable[[], torch.nn.Module], shape: tuple[int, ...], **kw) -> int:
    "FLOPs of one forward of the model `build()` on meta tensors of `shape`."
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device('meta'): m = build()
    with torch.no_grad(), FlopCounterMode(display=False) as fc: m(torch.empty(shape, device='meta'), **kw)
    return fc.get_total_flops()


def memory_estimate(ctx: Context) -> float:
    "Seconds: per row a subprocess plus (2 + repeats) steps of ~3× forward FLOPs (implicit: + 30 adjoint VJPs)."
    p, total = ctx.plan, 0.0
    c = model_cost(LDEQConfig.preset(p.memory_preset))
    for sp in _memory_specs(ctx):
        if sp['model'] == 'ldeq':
            fl = c.stem_flops * 3 + ((sp['k'] + 1) * c.cell_flops * (3 if sp['backward'] == 'unrolled' else 1)
                                     + (2 * 30 * c.cell_flops if sp['backward'] == 'implicit' else 0))
        else:
            cfg = StackedHourglassConfig.preset(p.memory_preset, n_stacks=sp['k'])
            fl = 3 * _flops(lambda: StackedHourglass(cfg), (1, 3, cfg.image_size, cfg.image_size))
        total += SUBPROCESS_S + (2 + p.repeats) * p.memory_batch * fl / (ctx.gflops * 1e9)
    return total


def memory_section(ctx: Context) -> dict:
    "Training memory and time per step vs solver iterations / stacks (Fig. 1)."
    specs = _memory_specs(ctx)
    rows = []
    for sp in tqdm(specs, desc='memory', disable=not ctx.progress):
        r = run_worker('memory', sp)
        name = 'Stacked-Hourglass' if sp['model'] != 'ldeq' else f"LDEQ {sp['backward']}"
        rows.append(dict(model=name, k=sp['k'], unit='stacks' if sp['model'] != 'ldeq' else 'iterations', **r))
    def series(name):
        return [r for r in rows if r['model'] == name]
    growth = {}
    for name in ('LDEQ implicit', 'LDEQ unrolled', 'Stacked-Hourglass'):
        s = series(name)
        if len(s) < 2: continue
        saved = [r['saved_mib'] for r in s]
        peak = [r['peak_rss_mib'] for r in s if r['peak_rss_mib'] is not None]
        growth[name] = dict(k=(s[0]['k'], s[-1]['k']), saved_ratio=saved[-1] / saved[0], saved_max_over_min=max(saved) / min(saved),
                            peak_rss_ratio=peak[-1] / peak[0] if len(peak) == len(s) and peak[0] > 0 else None,
                            step_time_ratio=s[-1]['step_s'] / s[0]['step_s'])
    targets = {}
    if 'LDEQ implicit' in growth: targets['implicit_flat'] = growth['LDEQ implicit']['saved_max_over_min'] <= IMPLICIT_FLAT_RATIO
    for name in ('LDEQ unrolled', 'Stacked-Hourglass'):
        if name in growth: targets[f'{name}_grows'] = growth[name]['saved_ratio'] > 1.5
    p = ctx.plan
    return dict(preset=p.memory_preset, batch=p.memory_batch, device=str(ctx.device), repeats=p.repeats, rows=rows,
                growth=growth, targets=targets)


def memory_report(s: dict) -> str:
    "Markdown of the memory section."
    cuda = any(r['cuda_peak_mib'] is not None for r in s['rows'])
    hdr = ['model', 'K', 'params', 'saved for backward MiB', 'peak RSS growth MiB'] + (['CUDA peak MiB'] if cuda else []) + ['step s (median)']
    rows = [[r['model'], f"{r['k']} {r['unit']}", f"{r['params'] / 1e6:.2f} M", fmt(r['saved_mib'], '.1f'), fmt(r['peak_rss_mib'], '.1f')]
            + ([fmt(r['cuda_peak_mib'], '.1f')] if cuda else []) + [fmt(r['step_s'], '.3f')] for r in s['rows']]
    g = s['growth']
    lines = [f"- {n}: K {v['k'][0]} → {v['k'][1]}: saved for backward ×{v['saved_ratio']:.2f}, peak RSS growth "
             f"×{fmt(v['peak_rss_ratio'])}, step time ×{v['step_time_ratio']:.2f}" for n, v in g.items()]
    t = s['targets']
    verdicts = [f"- LDEQ implicit flat (saved bytes max/min ≤ {IMPLICIT_FLAT_RATIO}): {yes_no(t.get('implicit_flat'))}",
                f"- LDEQ unrolled grows: {yes_no(t.get('LDEQ unrolled_grows'))}; Stacked-Hourglass grows: {yes_no(t.get('Stacked-Hourglass_grows'))}"]
    return '\n\n'.join([
        f"One training step (forward, MSE landmark loss on every supervised output, backward), `{s['preset']}` preset, "
        f"batch {s['batch']}, random weights, each row in a fresh process on {s['device']}. LDEQ runs exactly K solver "
        "iterations (tol 0); its implicit backward solves the adjoint with its own settings (≤ 30 VJPs). "
        "*Saved for backward*: distinct storages autograd keeps (parameters excluded; exact). *Peak RSS growth*: "
        "the process's peak resident memory during a step minus before it (activations, gradients, workspace; measured "
        "after the timed steps, with glibc's mmap threshold pinned at 64 KiB and its heap trimmed). "
        f"Step time: median of {s['repeats']} steps after a warm-up step.",
        md_table(hdr, rows), '\n'.join(lines), '\n'.join(verdicts)])


# ---------------------------------------------------------------------------------------------------------- video
@dataclass
class Clip:
    "A synthetic video decoded into memory."
    name: str
    frames: list[np.ndarray]
    boxes: np.ndarray


class CycledBoxes:
    "A clip's boxes repeated to length n without materialising them (what `VideoSource.boxes` needs: len, [t])."
    def __init__(self, boxes: np.ndarray, n: int):
        self.boxes, self.n = np.asarray(boxes, dtype=np.float64), int(n)

    def __len__(self) -> int: return self.n

    def __getitem__(self, t: int) -> np.ndarray:
        if not 0 <= t < self.n: raise IndexError(f'box {t} of {self.n}')
        return self.boxes[t % len(self.boxes)]


def noisy_stream(frames: Sequence[np.ndarray], n: int, seed: int = 0) -> Iterator[np.ndarray]:
    "`n` frames cycling `frames`, each with a little uint8 noise (7 noise patterns, saturating add)."
    import cv2
    rng = np.random.default_rng(seed)
    bank = [rng.integers(0, 4, frames[0].shape, dtype=np.uint8) for _ in range(7)]
    for t in range(n): yield cv2.add(frames[t % len(frames)], bank[t % len(bank)])


def video_root(ctx: Context) -> Path:
    "`--video-root`, else the synthetic WFLW-V set (generated on first use by `ldeq.data.ensure_synthetic`)."
    if ctx.video_root is not None: return ctx.video_root
    from ldeq.synth import ensure_synthetic
    return Path(ensure_synthetic(parts=('videos',), progress=ctx.progress).wflw_v)


def load_clips(root: Path, n_videos: int, n_frames: int) -> list[Clip]:
    "The first `n_frames` frames and boxes of the first `n_videos` videos (hard first, then easy) of a WFLW-V root."
    from ldeq.video import read_frames
    from ldeq.data import wflwv_items
    items = wflwv_items(root, 'full')
    if len(items) < n_videos: raise ValueError(f'{root} has {len(items)} videos, the benchmark needs {n_videos}')
    clips = []
    for it in items[:n_videos]:
        frames = list(islice(read_frames(it.video), n_frames))
        boxes = np.load(it.bboxes, allow_pickle=False)[:len(frames)].astype(np.float64)
        if len(frames) < n_frames or len(boxes) < len(frames):
            raise ValueError(f'{it.video}: {len(frames)} frames / {len(boxes)} boxes, the benchmark needs {n_frames}')
        clips.append(Clip(it.id, frames, boxes))
    return clips


def run_tracking(model: torch.nn.Module, clips: Sequence[Clip], method, batch_size: int) -> dict:
    "Track every clip with `method`, `batch_size` videos at a time (streaming): frames, seconds, mean f-evals per frame."
    from ldeq.tracking import VideoSource, track
    srcs = [VideoSource(iter(c.frames), boxes=c.boxes, name=c.name) for c in clips]
    n, nfe, failed = 0, 0.0, 0
    t0 = time.perf_counter()
    for r in track(model, srcs, method, batch_size):
        n += 1; nfe += r.nfe; failed += r.failed
    if model_device(model).type == 'cuda': torch.cuda.synchronize()
    return dict(frames=n, seconds=time.perf_counter() - t0, nfe_per_frame=nfe / max(n, 1), failed_frames=failed)


def model_device(model: torch.nn.Module) -> torch.device:
    "The device of a model's first parameter."
    return next(model.parameters()).device


def throughput(model: torch.nn.Module, clips: Sequence[Clip], configs: Sequence[tuple[Any, int]], repeats: int) -> list[dict]:
    "Median frames/s of each (method, batch size) over `repeats` rounds (the configurations alternate within a round)."
    for method, bs in configs:                            # warm-up: the first clip's first 3 frames, once per configuration
        run_tracking(model, [Clip(clips[0].name, clips[0].frames[:3], clips[0].boxes[:3])] * bs, method, bs)
    runs: list[list[dict]] = [[] for _ in configs]
    for _ in range(max(repeats, 1)):
        for i, (method, bs) in enumerate(configs): runs[i].append(run_tracking(model, clips, method, bs))
    out = []
    for rs in runs:
        fps = [r['frames'] / r['seconds'] for r in rs]
        out.append(dict(fps=statistics.median(fps), all_fps=fps, nfe_per_frame=rs[0]['nfe_per_frame'], frames=rs[0]['frames'],
                        failed_frames=rs[0]['failed_frames']))
    return out


def video_checkpoint(ctx: Context) -> Path | None:
    "`--checkpoint`, else the shipped demo LDEQ if it exists (not with --quick), else None (a random model)."
    if ctx.checkpoint is not None: return ctx.checkpoint
    return DEFAULT_CHECKPOINT if not ctx.quick and DEFAULT_CHECKPOINT.is_file() else None


def video_model(ctx: Context, device: torch.device | None = None) -> tuple[torch.nn.Module, str]:
    "The checkpoint's model (must be an LDEQ), else a random LDEQ of the plan's preset; and a description."
    from ldeq.checkpoint import load_model
    ck, device = video_checkpoint(ctx), device or ctx.device
    if ck is not None:
        m = load_model(ck, str(device))
        if not isinstance(m, LDEQ): raise TypeError(f'{ck}: the video benchmark needs an LDEQ checkpoint (RwR), got {type(m).__name__}')
        return m, f'checkpoint {ck}'
    torch.manual_seed(0)
    m = LDEQ(LDEQConfig.preset(ctx.plan.video_preset)).to(device).eval()
    return m, (f'randomly initialised `{ctx.plan.video_preset}` LDEQ (no checkpoint: untrained weights, so throughput '
               'and f-evaluations are not those of a trained model)')


def length_worker(spec: dict) -> dict:
    "RwR on one generated stream of `n` frames, in a fresh process: peak-RSS growth while streaming."
    from ldeq.tracking import RwR, VideoSource, track
    from ldeq.video import read_frames
    torch.manual_seed(0)
    model = LDEQ(LDEQConfig.preset(spec['preset'])).to(spec['device']).eval()
    frames = list(islice(read_frames(spec['video']), spec['clip_frames']))
    boxes = np.load(spec['boxes'], allow_pickle=False)[:len(frames)]
    method = RwR(spec['k'])
    def stream(n: int, seed: int) -> VideoSource:
        return VideoSource(noisy_stream(frames, n, seed), boxes=CycledBoxes(boxes, n), name=f'stream{n}')
    for _ in track(model, [stream(20, 1)], method): pass                      # warm-up
    gc.collect()
    tight = malloc_tight()
    cuda = spec['device'].startswith('cuda')
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    reset = reset_peak_rss()
    rss0 = rss_status('VmRSS')
    n, nfe, t0 = 0, 0.0, time.perf_counter()
    for r in track(model, [stream(spec['n'], 2)], method):
        n += 1; nfe += r.nfe
    secs = time.perf_counter() - t0
    hwm, rss1 = rss_status('VmHWM'), rss_status('VmRSS')
    return dict(frames=n, seconds=secs, fps=n / secs, nfe_per_frame=nfe / n,
                peak_growth_mib=(hwm - rss0) / MIB if reset and hwm is not None and rss0 is not None else None,
                end_growth_mib=(rss1 - rss0) / MIB if rss1 is not None and rss0 is not None else None,
                rss_before_mib=None if rss0 is None else rss0 / MIB,
                ru_maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, malloc_tight=tight,
                cuda_peak_mib=torch.cuda.max_memory_allocated() / MIB if cuda else None)


def video_estimate(ctx: Context) -> float:
    "Seconds: decode + (1 + repeats) × the three methods' frames × (FLOPs / rate + per-frame overhead), + the length streams."
    p = ctx.plan
    cfg = video_model(ctx, torch.device('cpu'))[0].cfg if video_checkpoint(ctx) is not None else LDEQConfig.preset(p.video_preset)
    c, rate = model_cost(cfg), ctx.gflops * 1e9 / BATCH1_SLOWDOWN
    fbf = (c.stem_flops + (cfg.deq.fwd.max_iters + 1) * c.cell_flops) / rate + FRAME_OVERHEAD_S
    rwr = (c.stem_flops + p.rwr_k * c.cell_flops) / rate + FRAME_OVERHEAD_S
    per_video = p.video_frames * fbf + 2 * (fbf + (p.video_frames - 1) * rwr)
    t = p.video_videos * p.video_frames * 0.002 + (1 + p.repeats) * p.video_videos * per_video
    lc = model_cost(LDEQConfig.preset(p.length_preset))
    per_len = (lc.stem_flops + p.rwr_k * lc.cell_flops) / rate + FRAME_OVERHEAD_S
    t += sum(SUBPROCESS_S + (n + 20) * per_len for n in p.lengths)
    if ctx.video_root is None:                            # the synthetic videos are generated on first use (issue 4: <= 3 min)
        from ldeq.synth import MARKER, default_synthetic_root
        if not (default_synthetic_root() / 'wflw_v' / MARKER).is_file(): t += SYNTHETIC_VIDEOS_S
    return t


def video_section(ctx: Context) -> dict:
    "Throughput of frame-by-frame, RwR and batched RwR; memory vs stream length."
    from ldeq.tracking import FrameByFrame, RwR, method_label
    from ldeq.data import wflwv_items
    p = ctx.plan
    root = video_root(ctx)
    clips = load_clips(root, p.video_videos, p.video_frames)
    model, model_note = video_model(ctx)
    configs = [('frame-by-frame', FrameByFrame(), 1), (f'RwR k={p.rwr_k}', RwR(p.rwr_k), 1),
               (f'RwR k={p.rwr_k}, {p.video_batch} videos batched', RwR(p.rwr_k), p.video_batch)]
    res = throughput(model, clips, [(m, bs) for _, m, bs in configs], p.repeats)
    rows = [dict(name=name, method=method_label(m), batch_size=bs, **r) for (name, m, bs), r in zip(configs, res)]
    fbf = rows[0]['fps']
    for r in rows: r['speedup_vs_frame_by_frame'] = r['fps'] / fbf
    item = wflwv_items(root, 'full')[0]
    lengths = []
    for n in tqdm(p.lengths, desc='memory vs length', disable=not ctx.progress):
        spec = dict(n=n, preset=p.length_preset, k=p.rwr_k, video=str(item.video), boxes=str(item.bboxes), clip_frames=80,
                    device=str(ctx.device), threads=ctx.threads)
        lengths.append(dict(length=n, **run_worker('length', spec)))
    short, long = lengths[0], lengths[-1]
    key = 'cuda_peak_mib' if ctx.device.type == 'cuda' else 'peak_growth_mib'
    bounded = (None if short[key] is None or long[key] is None else long[key] <= short[key] + LENGTH_TOLERANCE_MIB)
    per_frame = (None if short[key] is None or long[key] is None
                 else (long[key] - short[key]) * MIB / (long['length'] - short['length']))
    cfg = model.cfg
    return dict(root=str(root), model=model_note, preset_image_size=cfg.image_size, solver=dict(
                    method=cfg.deq.fwd.method, max_iters=cfg.deq.fwd.max_iters, tol=cfg.deq.fwd.tol),
                videos=p.video_videos, frames_per_video=p.video_frames, repeats=p.repeats, device=str(ctx.device),
                throughput=rows, length_preset=p.length_preset, lengths=lengths, length_metric=key,
                growth_bytes_per_extra_frame=per_frame,
                targets=dict(rwr_fps_at_least_2x=rows[1]['speedup_vs_frame_by_frame'] >= 2.0,
                             batched_rwr_fps_at_least_2x=rows[2]['speedup_vs_frame_by_frame'] >= 2.0,
                             memory_bounded_in_length=bounded))


def video_report(s: dict) -> str:
    "Markdown of the video section."
    rows = [[r['name'], r['batch_size'], r['frames'], fmt(r['fps'], '.1f'), fmt(r['nfe_per_frame'], '.2f'),
             f"×{r['speedup_vs_frame_by_frame']:.2f}", r['failed_frames']] for r in s['throughput']]
    lrows = [[f"{r['length']:,}", fmt(r['fps'], '.1f'), fmt(r['nfe_per_frame'], '.2f'), fmt(r['rss_before_mib'], '.0f'),
              fmt(r['peak_growth_mib'], '.1f'), fmt(r['end_growth_mib'], '.1f'), fmt(r['cuda_peak_mib'], '.1f')] for r in s['lengths']]
    t = s['targets']
    return '\n\n'.join([
        f"Model: {s['model']}; solver {s['solver']['method']}, ≤ {s['solver']['max_iters']} iterations, tol "
        f"{s['solver']['tol']:g}. {s['videos']} synthetic videos × {s['frames_per_video']} frames ({s['root']}), decoded "
        f"into memory, tracked with `ldeq.tracking.track` (crop, model, mapping back; given boxes); frames/s is the median "
        f"of {s['repeats']} rounds after a warm-up (the methods alternate within a round), on {s['device']}. RwR's first "
        "frame of each video is a full solve.",
        md_table(['method', 'videos per batch', 'frames', 'frames/s', 'f-evals / frame', 'vs frame-by-frame', 'failed frames'], rows),
        f"- RwR ≥ 2× the frames/s of frame-by-frame (issue 6): {yes_no(t['rwr_fps_at_least_2x'])} "
        f"(batched: {yes_no(t['batched_rwr_fps_at_least_2x'])})",
        f"Memory vs video length: RwR on one stream of generated frames (one synthetic clip cycled with noise, boxes "
        f"cycled lazily), each length in a fresh process after a 20-frame warm-up, `{s['length_preset']}` preset with "
        "random weights (to afford the long stream on 2 cores). *Peak growth*: peak RSS while streaming minus RSS before "
        "(VmHWM reset via /proc/self/clear_refs); *end growth*: RSS after minus before.",
        md_table(['frames', 'frames/s', 'f-evals / frame', 'RSS before MiB', 'peak growth MiB', 'end growth MiB', 'CUDA peak MiB'], lrows),
        f"- memory does not grow with length (long ≤ short + {LENGTH_TOLERANCE_MIB:g} MiB, on `{s['length_metric']}`): "
        f"{yes_no(t['memory_bounded_in_length'])}; difference per extra frame: "
        f"{fmt(s['growth_bytes_per_extra_frame'], '.0f')} bytes (a leak of one frame's 98 landmarks would be 1,568)"])


# ----------------------------------------------------------------------------------------------------------- cost
def matmul_speed(n: int, repeats: int, device: torch.device) -> dict:
    "GFLOP/s of an n × n float32 matmul (2 n³ FLOPs), median of `repeats` after a warm-up."
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device) for _ in range(2))
    t, ts = median_time(lambda: a @ b, repeats, 1, device)
    return dict(n=n, seconds=t, gflops=2 * n ** 3 / t / 1e9, all_seconds=ts)


def matmul_peak(sizes: Sequence[int], repeats: int, device: torch.device) -> dict:
    "The best median GFLOP/s over float32 matmuls of the given sizes (the machine's practical peak), and each size's."
    runs = [matmul_speed(n, repeats, device) for n in sizes]
    best = max(runs, key=lambda r: r['gflops'])
    return dict(n=best['n'], gflops=best['gflops'], sizes=runs)


def count_f_evals(model: LDEQ, batch: int, iters: int) -> int:
    "Evaluations of f in one `time_forward`-style forward (solver iterations + the extra step), counted by a hook."
    calls = []
    h = model.cell.register_forward_hook(lambda m, i, o: calls.append(1))
    try: time_forward(model, batch, iters, repeats=1, warmup=0)
    finally: h.remove()
    return len(calls)


def cost_estimate(ctx: Context) -> float:
    "Seconds: the matmuls, and (count / warm-up + repeats) forwards of 5 f-evaluations per timed case."
    p, rate = ctx.plan, ctx.gflops * 1e9
    t = sum((1 + max(p.repeats, 3)) * 2 * n ** 3 for n in p.matmul_sizes) / rate
    for preset, batch, reps in p.cost_cases:
        if reps: t += (1 + reps) * batch * model_cost(LDEQConfig.preset(preset)).forward_flops(5) / rate
    return t + 1.0


def cost_section(ctx: Context, iters: int = 5) -> dict:
    "Parameters, FLOPs, ms per image and achieved GFLOP/s of the presets vs the measured matmul peak."
    p = ctx.plan
    sizes = (4096, 8192, 16384) if ctx.device.type == 'cuda' else p.matmul_sizes
    peak = matmul_peak(sizes, max(p.repeats, 3), ctx.device)
    rows = []
    for preset, batch, reps in tqdm(p.cost_cases, desc='cost', disable=not ctx.progress):
        cfg = LDEQConfig.preset(preset)
        c = model_cost(cfg)
        row = dict(preset=preset, batch=batch, params=c.params, stem_gflops=c.stem_flops / 1e9, cell_gflops=c.cell_flops / 1e9,
                   iters=iters, repeats=reps)
        if reps:
            torch.manual_seed(0)
            model = LDEQ(cfg).to(ctx.device).eval()
            f_evals = count_f_evals(model, batch, iters)                  # also the warm-up
            ms = [time_forward(model, batch, iters, repeats=1, warmup=0) for _ in range(reps)]
            row.update(f_evals=f_evals, ms_per_image=statistics.median(ms), all_ms_per_image=ms,
                       forward_gflops=c.forward_flops(f_evals) / 1e9)
            row['achieved_gflops'] = row['forward_gflops'] / (row['ms_per_image'] / 1e3)
            row['fraction_of_peak'] = row['achieved_gflops'] / peak['gflops']
            del model
        rows.append(row)
    tf32 = ctx.device.type == 'cuda' and torch.backends.cudnn.allow_tf32
    return dict(device=str(ctx.device), matmul=peak, rows=rows, tf32_convolutions=tf32)


def cost_report(s: dict) -> str:
    "Markdown of the cost section."
    rows = [[r['preset'], r['batch'], f"{r['params'] / 1e6:.2f} M", fmt(r['stem_gflops'], '.2f'), fmt(r['cell_gflops'], '.2f'),
             r.get('f_evals', '–'), fmt(r.get('ms_per_image'), '.1f', 'not timed'), fmt(r.get('achieved_gflops'), '.1f'),
             fmt(None if r.get('fraction_of_peak') is None else 100 * r['fraction_of_peak'], '.0f')] for r in s['rows']]
    m = s['matmul']
    return '\n\n'.join([
        f"Inference forward with {s['rows'][0]['iters']} solver iterations (tol 0; f-evaluations counted by a hook), "
        f"random weights, on {s['device']}; ms per image is the median over single timed runs after a warm-up. FLOPs: "
        "convolutions only (`ldeq.model.model_cost`, meta tensors, 2 per multiply-add), per image. Peak: the best "
        f"float32 matmul, {m['gflops']:.1f} GFLOP/s at {m['n']}×{m['n']} (sizes "
        f"{', '.join(str(r['n']) for r in m['sizes'])}). Above 100% means the convolution library does fewer "
        "multiply-adds than the direct count (e.g. Winograd) or runs closer to the hardware peak than the matmul."
        + (" cuDNN convolutions may use TF32 here (torch.backends.cudnn.allow_tf32), the matmul peak is strict float32."
           if s.get('tf32_convolutions') else ''),
        md_table(['preset', 'batch', 'params', 'stem GFLOP', 'GFLOP per f-eval', 'f-evals', 'ms / image', 'achieved GFLOP/s',
                  '% of matmul peak'], rows)])


# ------------------------------------------------------------------------------------------------------------ gpu
def gpu_estimate(ctx: Context) -> float:
    "Seconds (rough, an H100-class GPU): model build, training steps, tracking."
    return 60.0


def gpu_section(ctx: Context, require_cuda: bool = True) -> dict:
    "Paper preset (tiny with --quick) on CUDA: training images/s (fp32, bf16), RwR / frame-by-frame frames/s, peak memory."
    if require_cuda and ctx.device.type != 'cuda':       # require_cuda=False: a CPU smoke test of this code path only
        raise RuntimeError('the gpu section needs --device cuda')
    from ldeq.train import train_step
    from ldeq.tracking import FrameByFrame, RwR
    p, dev = ctx.plan, ctx.device
    cfg = LDEQConfig.preset(p.gpu_preset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p.gpu_batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(dev)
    target = torch.rand(p.gpu_batch, cfg.n_landmarks, 2, generator=g).to(dev)
    training = []
    for precision in ('fp32', 'bf16'):
        torch.manual_seed(0)
        model = LDEQ(cfg).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        try:
            for _ in range(2): train_step(model, x, target, opt, precision=precision)
            torch.cuda.synchronize(dev); torch.cuda.reset_peak_memory_stats(dev)
            steps = []
            def step():
                _, s = train_step(model, x, target, opt, precision=precision)
                if s is not None: steps.append(s.float().mean().item())
            t, ts = median_time(step, p.gpu_steps, 0, dev)
            training.append(dict(precision=precision, batch=p.gpu_batch, step_s=t, images_per_s=p.gpu_batch / t,
                                 solver_steps=statistics.mean(steps) if steps else None,
                                 peak_mib=torch.cuda.max_memory_allocated(dev) / MIB))
        except Exception as e:
            training.append(dict(precision=precision, error=f'{type(e).__name__}: {e}'))
        del model, opt
        torch.cuda.empty_cache()
    torch.manual_seed(0)
    model = LDEQ(cfg).to(dev).eval()
    clips = load_clips(video_root(ctx), p.gpu_videos, p.video_frames)
    inference = []
    for name, method in ((f'RwR k={p.rwr_k}', RwR(p.rwr_k)), ('frame-by-frame', FrameByFrame())):
        torch.cuda.synchronize(dev); torch.cuda.reset_peak_memory_stats(dev)
        r = throughput(model, clips, [(method, p.gpu_videos)], p.repeats)[0]
        inference.append(dict(name=name, batch_size=p.gpu_videos, peak_mib=torch.cuda.max_memory_allocated(dev) / MIB, **r))
    return dict(device_name=torch.cuda.get_device_name(dev), preset=p.gpu_preset, training=training, inference=inference,
                note='random weights (frame-by-frame solves run to max_iters); frames include CPU cropping')


def gpu_report(s: dict) -> str:
    "Markdown of the gpu section."
    tr = [[r['precision'], r.get('batch', '–'), fmt(r.get('images_per_s'), '.1f'), fmt(r.get('solver_steps'), '.1f'),
           fmt(r.get('peak_mib'), '.0f'), r.get('error', '')] for r in s['training']]
    inf = [[r['name'], r['batch_size'], fmt(r['fps'], '.1f'), fmt(r['nfe_per_frame'], '.2f'), fmt(r['peak_mib'], '.0f')]
           for r in s['inference']]
    return '\n\n'.join([f"{s['device_name']}, `{s['preset']}` preset, {s['note']}.",
                        md_table(['training precision', 'batch', 'images/s', 'solver steps', 'peak GPU MiB', 'error'], tr),
                        md_table(['inference', 'videos per batch', 'frames/s', 'f-evals / frame', 'peak GPU MiB'], inf)])


# ---------------------------------------------------------------------------------------------------------- train
def train_estimate(ctx: Context) -> float:
    "Seconds on 2 quiet AVX2 cores: 16 timed LDEQ / baseline step settings of 7 steps, plus the input pipeline."
    return 20.0 if ctx.quick else 200.0


def train_section(ctx: Context) -> dict:
    "Training images/s per speed lever and the input pipeline (`benchmarks/train_speed.py`, parts steps and data)."
    import train_speed                                    # imported here: train_speed imports this module's helpers
    return train_speed.run(('steps', 'data'), ctx.out / 'train_speed', repeats=ctx.plan.repeats + 2, quick=ctx.quick,
                           threads=ctx.threads, progress=ctx.progress)


def train_report(s: dict) -> str:
    "Markdown of the train section (the headings of train_speed.md one level down)."
    import train_speed
    return train_speed.report(s).split('\n', 2)[2].replace('\n## ', '\n### ')


# ----------------------------------------------------------------------------------------------------------- main
@dataclass(frozen=True)
class Section:
    "A section: what it measures, how long it should take, how it is reported."
    run: Callable[[Context], dict]
    estimate: Callable[[Context], float]
    report: Callable[[dict], str]
    title: str


REGISTRY: dict[str, Section] = {
    'solvers': Section(solvers_section, lambda c: solvers_estimate(c.plan), solvers_report, 'Solver speed vs torchdeq'),
    'memory': Section(memory_section, memory_estimate, memory_report, 'Training memory and time vs iterations (Fig. 1)'),
    'video': Section(video_section, video_estimate, video_report, 'Video throughput and memory vs length'),
    'cost': Section(cost_section, cost_estimate, cost_report, 'Model cost'),
    'train': Section(train_section, train_estimate, train_report, 'Training throughput per speed lever'),
    'gpu': Section(gpu_section, gpu_estimate, gpu_report, 'GPU (paper preset)'),
}


def write_report(result: dict, out: Path) -> None:
    "Write run_all.json and report.md."
    out.mkdir(parents=True, exist_ok=True)
    (out / 'run_all.json').write_text(json.dumps(jsonable(result), indent=1, allow_nan=False))
    m, st = result['machine'], result['settings']
    parts = [f"# ldeq benchmarks{' (--quick: smoke-test sizes, not results)' if st['quick'] else ''}",
             f"`{result['command']}` — {result['started']}, {result.get('wall_s', 0):.0f} s in all."
             + (f"\n\n> **Warning**: {result['warning']}." if 'warning' in result else ''),
             md_table(['machine', ''], [['platform', m['platform']], ['CPU', f"{m['cpu']} ({m['cpu_count']} CPUs, affinity {m['cpu_affinity']})"],
                                        ['device', f"{m['device']} — {m['device_name']}"], ['torch threads', m['threads']],
                                        ['torch / torchdeq / numpy', f"{m['torch']} / {m['torchdeq']} / {m['numpy']}"],
                                        ['load average before / after', f"{m['loadavg_before'][0]:.2f} / {fmt(m.get('loadavg_after', [None])[0])}"],
                                        ['git', f"{m['commit']}{' (dirty)' if m['dirty'] else ''}"],
                                        ['calibrated conv speed', f"{st['calibrated_gflops']:.1f} GFLOP/s (small f-eval, batch 4)"]])]
    for name, s in result['sections'].items():
        head = f"## {REGISTRY[name].title}\n\n_estimated {s['estimate_s']:.0f} s, took {fmt(s.get('wall_s'), '.0f')} s_"
        if 'error' in s: parts.append(f"{head}\n\n**FAILED**:\n\n```\n{s['error']}\n```")
        else: parts.append(f"{head}\n\n{REGISTRY[name].report(s['result'])}")
    (out / 'report.md').write_text('\n\n'.join(parts) + '\n')


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    "Command line."
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('--out', default='out/bench', help='output folder (run_all.json, report.md)')
    ap.add_argument('--quick', action='store_true', help='tiny sizes, 1 repeat: a smoke test (~1 minute)')
    ap.add_argument('--sections', help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; gpu only with --device cuda)")
    ap.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (or 'cuda:N')")
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    ap.add_argument('--repeats', type=int, help='timed runs per measurement (default 3; 1 with --quick)')
    ap.add_argument('--checkpoint', type=Path, help=f'LDEQ checkpoint for the video section (default {DEFAULT_CHECKPOINT} if it exists)')
    ap.add_argument('--video-root', type=Path, help='WFLW-V-layout root (default: the synthetic set of ldeq.synth.ensure_synthetic)')
    ap.add_argument('--video-frames', type=int, help='frames of each video in the throughput test (default 80; 8 with --quick)')
    ap.add_argument('--estimate', action='store_true', help='print the plan and the time estimates, run nothing')
    ap.add_argument('--no-progress', action='store_true', help='hide progress bars')
    ap.add_argument('--worker', choices=('memory', 'length'), help=argparse.SUPPRESS)
    ap.add_argument('--spec', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker is not None: return a
    names = SECTIONS if a.sections is None else tuple(s.strip() for s in a.sections.split(',') if s.strip())
    bad = [s for s in names if s not in SECTIONS]
    if bad: ap.error(f'--sections: unknown {bad}; choose from {",".join(SECTIONS)}')
    if not names: ap.error('--sections: no section named')
    try: a.device = torch.device(a.device)
    except RuntimeError as e: ap.error(f'--device {a.device!r}: {e}')
    if a.device.type not in ('cpu', 'cuda'): ap.error(f"--device must be 'cpu' or 'cuda', got {a.device}")
    if a.device.type == 'cuda' and not torch.cuda.is_available():
        ap.error(f'--device {a.device}: CUDA is not available in this torch build ({torch.__version__}) / on this machine')
    if 'gpu' in names and a.device.type != 'cuda':
        if a.sections is not None: ap.error('--sections gpu needs --device cuda')
        names = tuple(s for s in names if s != 'gpu')
    a.names = names
    if a.repeats is not None and a.repeats < (1 if a.quick else 3): ap.error('--repeats must be >= 3 (>= 1 with --quick)')
    if a.threads < 1: ap.error('--threads must be >= 1')
    if a.video_frames is not None and a.video_frames < 2: ap.error('--video-frames must be >= 2')
    if a.checkpoint is not None and not a.checkpoint.is_file(): ap.error(f'--checkpoint {a.checkpoint}: no such file')
    if a.video_root is not None and not a.video_root.is_dir(): ap.error(f'--video-root {a.video_root}: no such folder')
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if a.worker is not None:
        worker_main(a.worker, json.loads(a.spec)); return 0
    torch.set_num_threads(a.threads)
    plan = QUICK if a.quick else FULL
    if a.repeats is not None: plan = dataclasses.replace(plan, repeats=a.repeats, solver_repeats=a.repeats)
    if a.video_frames is not None: plan = dataclasses.replace(plan, video_frames=a.video_frames)
    ctx = Context(plan, a.device, a.threads, Path(a.out), not a.no_progress, a.checkpoint, a.video_root, a.quick)
    ctx.gflops = calibrate_gflops(a.device)
    estimates = {}
    for n in a.names:
        try: estimates[n] = REGISTRY[n].estimate(ctx)
        except Exception as e:                           # the section itself will report the problem
            print(f'no estimate for {n}: {type(e).__name__}: {e}', file=sys.stderr)
            estimates[n] = math.nan
    print(f"plan ({'quick' if a.quick else 'full'}): {plan}\ncalibrated conv speed {ctx.gflops:.1f} GFLOP/s on {a.device}, "
          f"{torch.get_num_threads()} threads; estimates: " + ', '.join(f'{n} {s:.0f} s' for n, s in estimates.items())
          + f'; total {sum(estimates.values()):.0f} s', flush=True)
    if a.estimate: return 0
    result = dict(command=' '.join([Path(sys.executable).name, *sys.argv]), started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                  machine=machine_info(a.device), settings=dict(quick=a.quick, plan=dataclasses.asdict(plan), device=str(a.device),
                  threads=a.threads, calibrated_gflops=ctx.gflops), sections_run=list(a.names), sections={})
    load = result['machine']['loadavg_before'][0]
    if load > 0.5 and a.device.type == 'cpu':
        result['warning'] = (f'load average {load:.2f} at the start: another job shares the CPU, so these timings are not those '
                             'of a quiet machine (multi-threaded small ops suffer most)')
        print(f"WARNING: {result['warning']}", file=sys.stderr, flush=True)
    t_all, failed = time.perf_counter(), False
    for name in a.names:
        print(f'\n== {name}: {REGISTRY[name].title} (estimate {estimates[name]:.0f} s)', flush=True)
        entry = result['sections'][name] = dict(estimate_s=estimates[name])
        t0 = time.perf_counter()
        try: entry['result'] = REGISTRY[name].run(ctx)
        except Exception:
            failed = True
            entry['error'] = traceback.format_exc()
            print(f'{name} FAILED:\n{entry["error"]}', file=sys.stderr, flush=True)
        entry['wall_s'] = time.perf_counter() - t0
        print(f'== {name}: {entry["wall_s"]:.0f} s (estimated {estimates[name]:.0f} s)', flush=True)
        result['wall_s'] = time.perf_counter() - t_all
        result['machine']['loadavg_after'] = os.getloadavg()
        write_report(result, ctx.out)
    print(f"\nwrote {ctx.out / 'run_all.json'} and {ctx.out / 'report.md'} in {result['wall_s']:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
