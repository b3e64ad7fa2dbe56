"""Benchmark ldeq's DEQ engine against torchdeq on the problems of issue 2 (not a test; writes JSON).

Problems (float32, batch 8, z0 = 0, f = tanh(A z + x), x = 0.1 N(0, 1)):
  A  dense d = 1024, A = W = U diag(linspace(0, 0.99)) Uᵀ; reference: exact float64 (Newton + direct adjoint solve)
  B  conv 3×3, C = 32 on 32×32, symmetric kernel, operator norm ≤ 0.99 (scaled by the exact norm of the circular
     convolution on the (n+2)² torus, an upper bound of the zero-padded operator's; the power-iteration estimate of
     the actual norm is reported)
  C  conv 3×3, C = 98 on 64×64 (the paper's heatmap shape), operator norm ≤ 0.95
  B and C's reference: float64 solves to rel 1e-12 (forward and adjoint), certified by their own residuals.
The input scale 0.1 keeps tanh near its linear regime, so the Jacobian's spectral radius is close to the operator
norm (with x = N(0, 1) tanh saturates and every problem becomes easy); it is the scale at which torchdeq's figures
quoted in the issue are reproduced (A: 16 forward evaluations at rel 1e-3, a stall at 100 at rel 1e-5).

For each problem and tolerance (rel 1e-3, 1e-5, same for the forward and the adjoint solve, max 100 iterations)
we run a training step — DEQ forward, loss L = <c, y>, backward — with ldeq (`DEQ`, implicit backward) and with
torchdeq (`get_deq(ift=True)`, the autograd.Function implicit backward), both with Anderson (m = 6, lam = 1e-4,
their defaults), the relative residual |f(z) - z| / |f(z)| and the same z0, cell and loss. We report the forward
f-calls (batched cell evaluations, including the tracked extra step), backward cell evaluations and VJPs, median
wall times over --repeats runs after one warm-up (ours and torchdeq alternate), the time spent inside f during the
forward, the gradient error w.r.t. (A or kernel, x) against the reference, and whether the solve converged.
torch.set_num_threads(2). Usage: python -m benchmarks.bench_solvers [--out out/bench/solvers.json] [--repeats 5]
(or python benchmarks/bench_solvers.py ...). Also run_all.py's `solvers` section (`estimate`, `run`, `report` below).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.bench_solvers`
    import _launch; _launch.as_module(__file__)

import torch
import torch.nn.functional as Fn
from torch import nn
from tqdm.auto import tqdm

from ldeq.engine.deq import DEQ, DEQConfig
from ldeq.engine.solvers import SolverConfig, solve

from .bench_context import Context
from .common import BENCH_DIR, command_line, md_table, yes_no

B = 8
MAX_ITERS = 100
# Seconds to build problem A / B / C and its float64 reference on 2 quiet cores (from its recorded wall time minus its
# timed runs); used for run_all's estimate only.
SOLVER_SETUP_S = {'A': 10.0, 'B': 7.0, 'C': 16.0}


# ----------------------------------------------------------------------------------------------------- problems
class _CountBackward(torch.autograd.Function):
    "Identity whose backward counts one VJP through the cell."
    @staticmethod
    def forward(ctx, t, box): ctx.box = box; return t.view_as(t)
    @staticmethod
    def backward(ctx, g): ctx.box['vjp'] += 1; return g, None


class Cell(nn.Module):
    "f(z, x) = tanh(op(z) + x), op dense or conv; counts evaluations, VJPs and time spent in forward."
    def __init__(self, kind: str, weight: torch.Tensor):
        super().__init__()
        self.kind, self.weight = kind, nn.Parameter(weight)
        self.box = dict(f=0, vjp=0, f_s=0.0)

    def op(self, z):
        return z @ self.weight.T if self.kind == 'dense' else Fn.conv2d(z, self.weight, padding=1)

    def forward(self, z, x):
        t = time.perf_counter()
        out = torch.tanh(_CountBackward.apply(self.op(z), self.box) + x)
        self.box['f'] += 1; self.box['f_s'] += time.perf_counter() - t
        return out


def circular_norm(K: torch.Tensor, n: int) -> float:
    "Exact operator norm of the circular convolution with K on the n×n torus (FFT over the kernel)."
    C = K.shape[0]
    Kp = torch.zeros(C, C, n, n, dtype=torch.float64)
    Kp[:, :, :3, :3] = K.double()
    M = torch.fft.fft2(Kp).permute(2, 3, 0, 1)                 # (n, n, C, C): symbol at each frequency
    return torch.linalg.matrix_norm(M, 2).max().item()


def power_norm(K: torch.Tensor, n: int, iters: int = 30, seed: int = 0) -> float:
    "Power-iteration estimate (a lower bound) of the zero-padded conv operator norm."
    v = torch.randn(1, K.shape[1], n, n, generator=torch.Generator().manual_seed(seed), dtype=K.dtype)
    for _ in range(iters):
        v = Fn.conv_transpose2d(Fn.conv2d(v, K, padding=1), K, padding=1); v = v / v.norm()
    return Fn.conv2d(v, K, padding=1).norm().item()


@dataclass
class Problem:
    name: str
    kind: str
    weight: torch.Tensor        # float32
    x: torch.Tensor             # float32
    c: torch.Tensor             # float32 loss weights
    norm: float
    norm_note: str


def make_problem(name: str, seed: int = 0, x_scale: float = 0.1) -> Problem:
    g = torch.Generator().manual_seed(seed)
    if name == 'A':
        d = 1024
        U, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        W = ((U * torch.linspace(0, 0.99, d, dtype=torch.float64)) @ U.T).float()
        x = x_scale * torch.randn(B, d, generator=g)
        return Problem('A', 'dense', W, x, torch.randn(B, d, generator=g), 0.99, 'exact (spectrum set)')
    C, n, target = {'B': (32, 32, 0.99), 'C': (98, 64, 0.95)}[name]
    K = torch.randn(C, C, 3, 3, generator=g, dtype=torch.float64)
    K = (K + K.transpose(0, 1).flip(2, 3)) / 2               # K[o,i,h,w] = K[i,o,2-h,2-w]: self-adjoint conv
    K = (K * target / circular_norm(K, n + 2)).float()
    est = power_norm(K, n, iters={'B': 300, 'C': 60}[name])
    x = x_scale * torch.randn(B, C, n, n, generator=g)
    return Problem(name, 'conv', K, x, torch.randn(B, C, n, n, generator=g), est,
                   f'<= {target} (circular bound); power-iteration lower estimate {est:.4f}')


# --------------------------------------------------------------------------------------------------- reference
def reference(p: Problem) -> dict:
    "float64 gradient of L = <c, z*> w.r.t. (weight, x), with certified residuals."
    W, x, c = p.weight.double(), p.x.double(), p.c.double()
    cell = Cell(p.kind, W.clone())
    f = lambda z: cell(z, x)
    if p.kind == 'dense':                                     # Newton in float64, then a direct adjoint solve
        # (one sample at a time: batched float64 LU of (8, 1024, 1024) fails inside MKL with torch 2.13 on this CPU)
        lsolve = lambda M, r: torch.stack([torch.linalg.solve(M[i], r[i]) for i in range(len(r))])
        z = torch.zeros_like(x)
        I = torch.eye(W.shape[0], dtype=torch.float64)
        for _ in range(30):
            fz = torch.tanh(z @ W.T + x)
            z = z - lsolve(I - (1 - fz ** 2)[:, :, None] * W, z - fz)          # J = S W
        s = 1 - torch.tanh(z @ W.T + x) ** 2
        g = lsolve(I - W * s[:, None, :], c)                 # (I - Jᵀ) g = (I - W S) g = c
        gx = s * g
        gW = gx.T @ z
    else:                                                     # float64 Anderson solves, forward and adjoint
        tight = SolverConfig(max_iters=3000, tol=1e-12, m=8)
        with torch.no_grad(): z, st = solve(f, torch.zeros_like(x), tight)
        zr = z.clone().requires_grad_()
        xr = x.clone().requires_grad_()
        y = cell(zr, xr)
        vjp = lambda u: torch.autograd.grad(y, zr, u, retain_graph=True)[0]
        with torch.no_grad(): g, _ = solve(lambda u: vjp(u) + c, c, tight)
        gW, gx = torch.autograd.grad(y, (cell.weight, xr), g)
    with torch.no_grad():
        fz = f(z)
        fwd_res = ((fz - z).flatten(1).norm(dim=1) / fz.flatten(1).norm(dim=1)).max().item()
    zr = z.clone().requires_grad_()
    y = cell(zr, x)
    Jtg = torch.autograd.grad(y, zr, g)[0]
    adj_res = ((Jtg + c - g).flatten(1).norm(dim=1) / g.flatten(1).norm(dim=1)).max().item()
    return dict(grad=torch.cat([gW.flatten(), gx.flatten()]), fwd_residual=fwd_res, adjoint_residual=adj_res)


# --------------------------------------------------------------------------------------------------------- runs
def run_ours(cell: Cell, x, z0, c, tol: float):
    deq = DEQ(cell, DEQConfig(fwd=SolverConfig(method='anderson', max_iters=MAX_ITERS, tol=tol, stop_mode='rel'),
                              bwd=SolverConfig(method='anderson', max_iters=MAX_ITERS, tol=tol, stop_mode='rel')))
    def fwd():
        y, st = deq(x, z0)
        return y, dict(converged=bool(st.converged.all()), residual=st.residual.max().item(),
                       nfe_mean=st.nfe.float().mean().item())
    def bwd_info(): 
        bs = deq.last_bwd_stats
        return dict(bwd_converged=bool(bs.converged.all()), bwd_residual=bs.residual.max().item())
    return fwd, bwd_info


def run_torchdeq(cell: Cell, x, z0, c, tol: float):
    from torchdeq import get_deq
    deq = get_deq(ift=True, f_solver='anderson', b_solver='anderson', f_max_iter=MAX_ITERS, b_max_iter=MAX_ITERS,
                  f_tol=tol, b_tol=tol, f_stop_mode='rel', b_stop_mode='rel')
    deq.train()
    box = {}
    def fwd():
        z_out, info = deq(lambda z: cell(z, x), z0, backward_writer=lambda i: box.update(i))
        r = info['rel_lowest']
        return z_out[-1], dict(converged=bool((r < tol).all()), residual=r.max().item(), nfe_mean=math.nan)
    def bwd_info():
        r = box.get('rel_lowest')
        return dict(bwd_converged=bool((r < tol).all()), bwd_residual=r.max().item()) if r is not None else {}
    return fwd, bwd_info


def one_step(lib: str, p: Problem, tol: float):
    "One training step; returns the measurements and the gradient (weight, x)."
    cell = Cell(p.kind, p.weight.clone())
    x = p.x.clone().requires_grad_()
    z0 = torch.zeros_like(p.x)
    fwd, bwd_info = (run_ours if lib == 'ours' else run_torchdeq)(cell, x, z0, p.c, tol)
    t0 = time.perf_counter()
    y, info = fwd()
    t1 = time.perf_counter()
    n_fwd, f_s = cell.box['f'], cell.box['f_s']
    (y * p.c).sum().backward()
    t2 = time.perf_counter()
    grad = torch.cat([cell.weight.grad.flatten(), x.grad.flatten()])
    return dict(fwd_f=n_fwd, bwd_f=cell.box['f'] - n_fwd, bwd_vjp=cell.box['vjp'], fwd_ms=(t1 - t0) * 1e3,
                bwd_ms=(t2 - t1) * 1e3, fwd_in_f_ms=f_s * 1e3, **info, **bwd_info()), grad


def bench(p: Problem, ref: dict, tol: float, repeats: int, bar) -> dict:
    out = {}
    runs = {'ours': [], 'torchdeq': []}
    grads = {}
    for r in range(repeats + 1):                          # r = 0 is the warm-up
        for lib in ('ours', 'torchdeq'):
            m, g = one_step(lib, p, tol)
            if r == 0: grads[lib] = g
            else: runs[lib].append(m)
            bar.update(1)
    for lib, ms in runs.items():
        med = {k: statistics.median(m[k] for m in ms) for k in ('fwd_ms', 'bwd_ms', 'fwd_in_f_ms')}
        total = statistics.median(m['fwd_ms'] + m['bwd_ms'] for m in ms)
        first = ms[0]
        out[lib] = dict(fwd_f=first['fwd_f'], bwd_f=first['bwd_f'], bwd_vjp=first['bwd_vjp'],
                        fwd_ms=med['fwd_ms'], bwd_ms=med['bwd_ms'], total_ms=total, fwd_in_f_ms=med['fwd_in_f_ms'],
                        fwd_overhead_ms=med['fwd_ms'] - med['fwd_in_f_ms'],
                        grad_rel_err=((grads[lib].double() - ref['grad']).norm() / ref['grad'].norm()).item(),
                        converged=first['converged'], residual=first['residual'], nfe_mean=first['nfe_mean'],
                        bwd_converged=first.get('bwd_converged'), bwd_residual=first.get('bwd_residual'),
                        all_fwd_ms=[m['fwd_ms'] for m in ms], all_bwd_ms=[m['bwd_ms'] for m in ms],
                        counts_stable=len({(m['fwd_f'], m['bwd_f'], m['bwd_vjp']) for m in ms}) == 1)
    return out


def measure(problems: Sequence[str], tols: Sequence[float], repeats: int, bar, x_scale: float = 0.1) -> list[dict]:
    "Every problem at every tolerance, ours vs torchdeq (`bench`), with the problem's norm and its reference's residuals."
    results = []
    for name in problems:
        p = make_problem(name, x_scale=x_scale)
        ref = reference(p)
        for tol in tols:
            r = bench(p, ref, tol, repeats, bar)
            results.append(dict(problem=name, tol=tol, norm=p.norm, norm_note=p.norm_note,
                                ref_fwd_residual=ref['fwd_residual'], ref_adjoint_residual=ref['adjoint_residual'], **r))
    return results


def table(results: list[dict]) -> str:
    "Markdown table of the results."
    rows = ['| problem | tol | lib | fwd f-calls | bwd f / VJPs | fwd ms | bwd ms | total ms | fwd ms in f | grad rel err | converged fwd/bwd |',
            '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in results:
        for lib in ('ours', 'torchdeq'):
            m = r[lib]
            rows.append(f"| {r['problem']} | {r['tol']:g} | {lib} | {m['fwd_f']} | {m['bwd_f']} / {m['bwd_vjp']} | "
                        f"{m['fwd_ms']:.1f} | {m['bwd_ms']:.1f} | {m['total_ms']:.1f} | {m['fwd_in_f_ms']:.1f} | "
                        f"{m['grad_rel_err']:.1e} | {'yes' if m['converged'] else 'NO'}/{'yes' if m['bwd_converged'] else 'NO'} |")
        o, t = r['ours'], r['torchdeq']
        rows.append(f"| {r['problem']} | {r['tol']:g} | ours/torchdeq | {o['fwd_f'] / t['fwd_f']:.2f} | "
                    f"{(o['bwd_f'] + o['bwd_vjp']) / max(t['bwd_f'] + t['bwd_vjp'], 1):.2f} | {o['fwd_ms'] / t['fwd_ms']:.2f} | "
                    f"{o['bwd_ms'] / t['bwd_ms']:.2f} | {o['total_ms'] / t['total_ms']:.2f} | | | |")
    return '\n'.join(rows)


# --------------------------------------------------------------------------------------- run_all's solvers section
def estimate(ctx: Context) -> float:
    "Seconds: problem set-up + (repeats + warm-up) × both libraries' step times recorded in results/solvers.json."
    p = ctx.plan
    f = BENCH_DIR / 'results' / 'solvers.json'
    step = {}
    if f.is_file():
        for r in json.loads(f.read_text())['results']:
            step[(r['problem'], r['tol'])] = (r['ours']['total_ms'] + r['torchdeq']['total_ms']) / 1e3
    s = sum(SOLVER_SETUP_S.get(n, 10.0) for n in p.solver_problems)
    return s + sum((p.solver_repeats + 1) * step.get((n, t), 5.0) for n in p.solver_problems for t in p.solver_tols)


def run(ctx: Context) -> dict:
    "This module's problems, ours vs torchdeq, side by side (CPU)."
    try: import torchdeq  # noqa: F401
    except ImportError: raise RuntimeError('the solvers section needs torchdeq: .venv/bin/pip install torchdeq torch==2.13.0') from None
    p = ctx.plan
    bar = tqdm(total=len(p.solver_problems) * len(p.solver_tols) * 2 * (p.solver_repeats + 1), desc='solvers', disable=not ctx.progress)
    results = measure(p.solver_problems, p.solver_tols, p.solver_repeats, bar)
    bar.close()
    for r in results:
        o, t = r['ours'], r['torchdeq']
        stalled = not t['converged']
        r['ratios'] = dict(fwd_f=o['fwd_f'] / t['fwd_f'], total_ms=o['total_ms'] / t['total_ms'],
                           fwd_ms=o['fwd_ms'] / t['fwd_ms'], bwd_ms=o['bwd_ms'] / t['bwd_ms'])
        r['targets'] = dict(f_evals_le_torchdeq=o['fwd_f'] <= t['fwd_f'], time_le_1x=o['total_ms'] <= t['total_ms'],
                            converges_where_torchdeq_stalls=(o['converged'] if stalled else None))
    return dict(device='cpu', batch=B, max_iters=MAX_ITERS, repeats=p.solver_repeats, results=results, table=table(results))


def report(s: dict) -> str:
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
        '<details><summary>Full table (benchmarks/bench_solvers.py format)</summary>\n\n' + s['table'] + '\n\n</details>'])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='out/bench/solvers.json', help='JSON output path')
    ap.add_argument('--repeats', type=int, default=5, help='timed runs per case (after one warm-up); >= 3')
    ap.add_argument('--problems', default='A,B,C', help='comma-separated subset of A,B,C')
    ap.add_argument('--tols', default='1e-3,1e-5', help='comma-separated relative tolerances')
    ap.add_argument('--x-scale', type=float, default=0.1, help='standard deviation of the inputs x')
    ap.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    a = ap.parse_args(argv)
    if a.repeats < 3: ap.error('--repeats must be >= 3')
    try: import torchdeq
    except ImportError: sys.exit("torchdeq is needed for this benchmark: .venv/bin/pip install torchdeq torch==2.13.0")
    torch.set_num_threads(2)
    problems, tols = a.problems.split(','), [float(t) for t in a.tols.split(',')]
    load0 = os.getloadavg()
    bar = tqdm(total=len(problems) * len(tols) * 2 * (a.repeats + 1), disable=a.no_progress, desc='solver benchmark')
    t_start = time.time()
    results = measure(problems, tols, a.repeats, bar, a.x_scale)
    bar.close()
    md = table(results)
    meta = dict(torch=torch.__version__, torchdeq=getattr(torchdeq, '__version__', '0.1.0'), threads=torch.get_num_threads(),
                batch=B, max_iters=MAX_ITERS, repeats=a.repeats, x_scale=a.x_scale, machine=platform.machine(), cpu_count=os.cpu_count(),
                loadavg_before=load0, loadavg_after=os.getloadavg(), wall_s=time.time() - t_start,
                command=command_line())
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, results=results, table=md), indent=1))
    print(md)
    print(f"\nload average before {load0[0]:.2f}, after {meta['loadavg_after'][0]:.2f}; wrote {out}")


if __name__ == '__main__':
    main()
