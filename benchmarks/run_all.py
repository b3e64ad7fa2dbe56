"""All of ldeq's performance numbers in one run (issue 8): writes `run_all.json` and `report.md` under `--out`.

Every section runs in the same process, one after the other, with `torch.set_num_threads(--threads)` (default 2), so
that the ratios it reports (ours / torchdeq, RwR / frame-by-frame, ...) are measured side by side on the same machine
in the same state. Timings are the median of `repeats` (3; solvers 5; 1 with --quick) runs after a warm-up. Machine
info (platform, CPU model and count, torch / torchdeq versions, threads, device name, load average before and after,
git commit) is recorded with the numbers. Run it on a quiet machine: with another job on the same cores, torch's
worker threads wait on each other and small-op-heavy timings (batch 1, the tiny preset) get many times slower; the
report flags a load average above 0.5 at the start.

Sections (select with `--sections`, default all of them; `gpu` only with `--device cuda`):

solvers  Solver speed vs torchdeq on the problems of `benchmarks/bench_solvers.py` (the same code as its own script): a DEQ
         training step (forward solve, loss, implicit backward) with ours and with torchdeq, Anderson on both, at
         relative tolerances 1e-3 and 1e-5. Reports f-evaluations, wall times (ms), gradient error vs a float64
         reference; target (issue 2): ours <= torchdeq's f-evaluations and <= 1.0x its median time at every case.
         Always on CPU (the problems are built on CPU).
memory   The data behind the paper's Fig. 1: one training step of LDEQ (`implicit` and `unrolled` backward) at K solver
         iterations and of a Stacked-Hourglass with K stacks. Each row runs in a fresh subprocess: a warm-up step,
         `repeats` timed steps (median = time per step), then one step measured by `ldeq.models.memory.training_memory`:
         the bytes autograd saves for backward (exact, deterministic) and the peak-RSS growth of the step (Linux VmHWM
         reset through /proc/self/clear_refs; CUDA: max_memory_allocated). Before that step glibc is told to serve
         allocations >= 64 KiB with mmap and to trim its heap, so that memory freed by earlier steps cannot hide the
         peak. Targets: LDEQ implicit saved bytes flat in K (max/min <= 1.10, issue 2), unrolled and
         Stacked-Hourglass growing.
video    Tracking throughput on 4 synthetic videos of 80 frames (the WFLW-V-layout set of
         `ldeq.faces.synth.ensure_synthetic`, generated on first use, or `--video-root`), decoded into memory first so that
         only tracking is timed (cropping, the model, mapping back; the given boxes): frame-by-frame (batch 1), RwR k=2
         (batch 1) and RwR batched over the 4 videos, all through `ldeq.video.tracking.track`.
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
         (`ldeq.models.model.model_cost`, counted on meta tensors), ms per image of an inference forward with exactly 5 solver
         iterations (`ldeq.models.model.time_forward`, median of single timed runs; the f-evaluations are counted with a
         hook), the achieved GFLOP/s, and its ratio to the machine's measured float32 matmul peak (the best median
         GFLOP/s of n x n matmuls, n = 1024, 2048, 4096; 2 n^3 FLOPs). The FLOP count covers convolutions only (norms
         and activations are not counted).
gpu      (`--device cuda` only) paper preset: training images/s (`ldeq.training.train.train_step`, batch 16, fp32 and bf16
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

Each section is a module, benchmarks/bench_<section>.py, listed in benchmarks/registry.py.

Usage: python -m benchmarks.run_all [--out out/bench] [--quick] [--sections solvers,memory,video,cost]
       [--device cpu|cuda] [--threads 2] [--repeats 3] [--checkpoint CKPT] [--video-root ROOT] [--video-frames N]
       [--estimate] [--no-progress]   (python benchmarks/run_all.py ... runs the same)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.run_all`
    import _launch; _launch.as_module(__file__)

import numpy as np
import torch

from .bench_context import DEFAULT_CHECKPOINT, FULL, QUICK, Context, calibrate_gflops
from .common import (command_line, cpu_affinity, cpu_model, doc_parser, fmt, git_state, jsonable, md_table, parse_names,
                     write_json)
from .registry import RUN_ALL

SECTIONS = tuple(RUN_ALL)


def machine_info(device: torch.device) -> dict:
    "Platform, CPU, versions, threads and device of this run."
    from importlib.metadata import PackageNotFoundError, version
    try: tdq = version('torchdeq')
    except PackageNotFoundError: tdq = None
    dev_name = torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_model()
    return dict(platform=platform.platform(), machine=platform.machine(), python=platform.python_version(),
                cpu=cpu_model(), cpu_count=os.cpu_count(), cpu_affinity=cpu_affinity(), torch=torch.__version__,
                torchdeq=tdq, numpy=np.__version__, threads=torch.get_num_threads(), device=str(device),
                device_name=dev_name, cuda_available=torch.cuda.is_available(), loadavg_before=os.getloadavg(),
                **git_state())


def worker_main(kind: str, spec: dict) -> None:
    "Entry point of a worker subprocess: print one JSON line."
    from . import bench_memory, bench_video
    torch.set_num_threads(spec['threads'])
    out = {'memory': bench_memory.worker, 'length': bench_video.length_worker}[kind](spec)
    print(json.dumps(jsonable(out)))


def write_report(result: dict, out: Path) -> None:
    "Write run_all.json and report.md."
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'run_all.json', result)
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
        head = f"## {RUN_ALL[name].title}\n\n_estimated {s['estimate_s']:.0f} s, took {fmt(s.get('wall_s'), '.0f')} s_"
        if 'error' in s: parts.append(f"{head}\n\n**FAILED**:\n\n```\n{s['error']}\n```")
        else: parts.append(f"{head}\n\n{RUN_ALL[name].report(s['result'])}")
    (out / 'report.md').write_text('\n\n'.join(parts) + '\n')


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    "Command line."
    ap = doc_parser(__doc__)
    ap.add_argument('--out', default='out/bench', help='output folder (run_all.json, report.md)')
    ap.add_argument('--quick', action='store_true', help='tiny sizes, 1 repeat: a smoke test (~1 minute)')
    ap.add_argument('--sections', help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; gpu only with --device cuda)")
    ap.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (or 'cuda:N')")
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    ap.add_argument('--repeats', type=int, help='timed runs per measurement (default 3; 1 with --quick)')
    ap.add_argument('--checkpoint', type=Path, help=f'LDEQ checkpoint for the video section (default {DEFAULT_CHECKPOINT} if it exists)')
    ap.add_argument('--video-root', type=Path, help='WFLW-V-layout root (default: the synthetic set of ldeq.faces.synth.ensure_synthetic)')
    ap.add_argument('--video-frames', type=int, help='frames of each video in the throughput test (default 80; 8 with --quick)')
    ap.add_argument('--estimate', action='store_true', help='print the plan and the time estimates, run nothing')
    ap.add_argument('--no-progress', action='store_true', help='hide progress bars')
    ap.add_argument('--worker', choices=('memory', 'length'), help=argparse.SUPPRESS)
    ap.add_argument('--spec', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker is not None: return a
    names = parse_names(ap, '--sections', a.sections, SECTIONS, 'section')
    try: a.device = torch.device(a.device)
    except RuntimeError as e: ap.error(f'--device {a.device!r}: {e}')
    if a.device.type not in ('cpu', 'cuda'): ap.error(f"--device must be 'cpu' or 'cuda', got {a.device}")
    if a.device.type == 'cuda' and not torch.cuda.is_available():
        ap.error(f'--device {a.device}: CUDA is not available in this torch build ({torch.__version__}) / on this machine')
    gpu_only = [s for s in names if RUN_ALL[s].needs_gpu]
    if gpu_only and a.device.type != 'cuda':
        if a.sections is not None: ap.error(f"--sections {','.join(gpu_only)} needs --device cuda")
        names = tuple(s for s in names if s not in gpu_only)
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
        try: estimates[n] = RUN_ALL[n].estimate(ctx)
        except Exception as e:                           # the section itself will report the problem
            print(f'no estimate for {n}: {type(e).__name__}: {e}', file=sys.stderr)
            estimates[n] = math.nan
    print(f"plan ({'quick' if a.quick else 'full'}): {plan}\ncalibrated conv speed {ctx.gflops:.1f} GFLOP/s on {a.device}, "
          f"{torch.get_num_threads()} threads; estimates: " + ', '.join(f'{n} {s:.0f} s' for n, s in estimates.items())
          + f'; total {sum(estimates.values()):.0f} s', flush=True)
    if a.estimate: return 0
    result = dict(command=command_line(), started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                  machine=machine_info(a.device), settings=dict(quick=a.quick, plan=dataclasses.asdict(plan), device=str(a.device),
                  threads=a.threads, calibrated_gflops=ctx.gflops), sections_run=list(a.names), sections={})
    load = result['machine']['loadavg_before'][0]
    if load > 0.5 and a.device.type == 'cpu':
        result['warning'] = (f'load average {load:.2f} at the start: another job shares the CPU, so these timings are not those '
                             'of a quiet machine (multi-threaded small ops suffer most)')
        print(f"WARNING: {result['warning']}", file=sys.stderr, flush=True)
    t_all, failed = time.perf_counter(), False
    for name in a.names:
        print(f'\n== {name}: {RUN_ALL[name].title} (estimate {estimates[name]:.0f} s)', flush=True)
        entry = result['sections'][name] = dict(estimate_s=estimates[name])
        t0 = time.perf_counter()
        try: entry['result'] = RUN_ALL[name].run(ctx)
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
