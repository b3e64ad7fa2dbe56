"""What every section of `run_all.py` shares: the plan (the sizes of every section, full or --quick), the context of the
run, and the calibration of this machine's convolution speed that the time estimates use."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ldeq.core.assets import demo_checkpoints
from ldeq.models.model import LDEQ, LDEQConfig, model_cost

from .common import median_time

DEFAULT_CHECKPOINT = demo_checkpoints()['ldeq']
SUBPROCESS_S = 3.0          # start-up of a worker subprocess (python, torch, ldeq imports) on 2 cores


# ------------------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class Plan:
    "Sizes of every section: `FULL` (<= 15 minutes on 2 quiet cores) or `QUICK` (a smoke test, ~1 minute)."
    repeats: int                                  # timed runs per measurement, after a warm-up
    solver_repeats: int                           # timed runs per case of the solver benchmark
    solver_problems: tuple[str, ...]              # problems of benchmarks/bench_solvers.py
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


# ---------------------------------------------------------------------------------------------------- calibration
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
