"""The GPU path, checked in one command (issue 17): writes `report.md` and `gpu_check.json` under `--out`.

A GPU is lent only now and then, for minutes, so this is one prepared command that runs everything worth knowing
about ldeq on a GPU in at most 8 minutes (`make gpu-check`) and reports it. Each part runs in its own subprocess of
this script with its own time limit (a soft limit in the worker, SIGALRM, that keeps what it measured so far; and
`subprocess.run(timeout=...)` as the hard one). A part that fails or runs out of time is recorded with the tail of its
error or log, and the next part still runs. The report is rewritten after every part, so a killed run leaves the
parts it finished. Exit status: 0 when every part is ok and every check is met, 1 otherwise, 2 when CUDA is missing.

Parts (`--parts`, default all, in this order; the limits are those of a GPU run, `--quick` has generous ones):

env         (15 s) GPU name and memory, torch / CUDA / cuDNN versions, torch.cuda.is_available(), TF32 settings, the ldeq
            version and git commit, and what this machine still needs beyond the README's set-up.
data        (180 s) The synthetic benchmark of `ldeq.faces.synth.ensure_synthetic` (5,000 + 1,000 stills and the main job's 25 + 25 clips, a spread quarter of the default 100 + 100 of a 400-clip pool; 105-135 s with 16 cores on the H200 machine for 25 + 25 clips of the earlier default) in the
            default cache (`$LDEQ_CACHE` or ~/.cache/ldeq), generated with every CPU core when it is missing, before
            the parts that need it (they would generate it with 2 workers). --quick: a tiny set under --out.
inference   (30 s) The `paper` preset (random weights, eval): images/s of an inference forward with exactly 12 solver
            iterations (tol 0, `ldeq.models.model.time_forward`; the f-evaluations are counted by a hook) at batch 1, 32 and
            128, in fp32 and in bf16 autocast, with the peak GPU memory and the achieved conv TFLOP/s.
train_step  (40 s) `ldeq.training.train.train_step` at batch 32 on a random batch: images/s and peak GPU memory
            (torch.cuda.max_memory_allocated) for the implicit and the JFB backward, fp32 and bf16; then Fig. 1 on the
            GPU, `ldeq.models.memory.fig1_memory_table`: one training step's memory for LDEQ implicit at 5, 10, 20 and 40
            iterations (flat: largest / smallest <= 1.10) and unrolled at 5 and 10 (growing), batch 8.
train_run   (90 s) A real run: `ldeq.training.train.train(TrainConfig.recipe('paper', dataset='synthetic', ...))` on the
            synthetic stills (640 of them, 40 steps of 16 per epoch, JFB, bf16, up to 8 loader workers), stopped by
            `max_steps` at step 210 (last.pt written), then resumed with `resume=True` to step 240: training loss per
            epoch (going down), images/s, and the resumed run continuing from the saved global step.
video       (35 s) RwR (k = 2) against frame-by-frame on the synthetic clips, `paper` preset with random weights: batch
            1 on 2 clips and batched over 16 clips, through `benchmarks/bench_video.py`'s `load_clips` and `throughput`
            (`ldeq.video.tracking.track`: crop, model, mapping back); frames/s, f-evaluations per frame, peak GPU memory.
tables      (70 s) nbs/tables.ipynb in quick mode on the device through papermill (`-p quick True -p device cuda`):
            Tables 1-3 of the shipped demo models; needs papermill and ipykernel in this Python.
interop     (20 s) The official checkpoint format on the device: a `paper` model with random weights (tol 0, so that
            both devices make the same number of solver iterations) → `ldeq.models.checkpoint.save_official` →
            `load_official(map_location=device)`: the weights bit for bit, the configuration, and the landmarks of a
            fixed input within 1e-4 of the CPU model's (TF32 off; the default TF32 convolutions are reported too).

`--quick` runs the same code at tiny sizes (the `tiny` preset, batches 1-2, 3 + 1 training steps, 2 clips of 8
frames, a tiny synthetic set under --out): with `--device cpu --quick` it is the CPU dry run of
tests/test_gpu_check.py that keeps this script from rotting. Without CUDA, `--device cuda` (the default) prints one
line saying so and exits with status 2, after writing a report that says so.

Each part is a module, benchmarks/gpu_<part>.py; the parts, their order and their time limits are in
benchmarks/registry.py.

Usage: python -m benchmarks.gpu_check [--out out/gpu_check] [--device cuda|cuda:N|cpu] [--quick]
       [--parts env,data,...] [--limits part=seconds,...]   (python benchmarks/gpu_check.py ... runs the same)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.gpu_check`
    import _launch; _launch.as_module(__file__)

import torch

from .common import (REPO, checkout_env, command_line, doc_parser, fmt, md_table, module_command, parse_names,
                     write_json)
from .gpu_context import FULL, QUICK, SETUP_NOTE, TORCH_PIN, Ctx, Plan, synthetic_ready
from .registry import GPU_CHECK

PARTS = tuple(GPU_CHECK)


class PartTimeout(Exception):
    "A part ran past its soft time limit."


# --------------------------------------------------------------------------------------------------- worker side
def worker_main(part: str, device: str, quick: bool, out: Path, result_file: Path, deadline: float) -> int:
    "Run one part in this (worker) process and write its result file; at `deadline` (time.time()) PartTimeout is raised."
    ctx = Ctx(QUICK if quick else FULL, torch.device(device), quick, out, result_file)
    def on_alarm(signum, frame): raise PartTimeout(f'{part} ran past its time limit')
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.time(), 0.01))
    try:
        result = GPU_CHECK[part].run(ctx)
        signal.setitimer(signal.ITIMER_REAL, 0)
        write_json(result_file, dict(status='ok', result=result))
        return 0
    except BaseException as e:                               # PartTimeout, errors, SystemExit: recorded with their traceback
        signal.setitimer(signal.ITIMER_REAL, 0)
        status = 'timeout' if isinstance(e, PartTimeout) else 'failed'
        write_json(result_file, dict(status=status, result=ctx.partial or None, error=f'{type(e).__name__}: {e}'[:2000],
                                     traceback=traceback.format_exc()[-4000:]))
        traceback.print_exc()
        return 1


# --------------------------------------------------------------------------------------------------- parent side
def soft_limit(limit: float) -> float:
    "The worker's own limit (from its start): a few seconds before the hard one, to report what it measured."
    return max(limit - 5.0, 0.85 * limit)


def log_tail(path: Path, n: int = 3000) -> str:
    "The last `n` characters of a log file."
    try: return path.read_text(errors='replace')[-n:]
    except OSError: return ''


def run_part(name: str, args: argparse.Namespace, limit: float) -> dict:
    "Run part `name` in a subprocess of this script within `limit` seconds: its status, result and error."
    out = Path(args.out).resolve()
    (out / 'parts').mkdir(parents=True, exist_ok=True); (out / 'logs').mkdir(parents=True, exist_ok=True)
    result_file, log = out / 'parts' / f'{name}.json', out / 'logs' / f'{name}.log'
    result_file.unlink(missing_ok=True)
    cmd = module_command('gpu_check', '--worker', name, '--device', args.device, '--out', str(out), '--result', str(result_file),
                         '--deadline', f'{time.time() + soft_limit(limit):.3f}', *(['--quick'] if args.quick else []))
    env = checkout_env(PYTHONUNBUFFERED='1')
    t0, hard = time.perf_counter(), None
    with open(log, 'w') as f:
        try: rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=limit, cwd=REPO, env=env).returncode
        except subprocess.TimeoutExpired: rc, hard = None, f'no answer within the hard limit of {limit:g} s: killed'
    entry = dict(status='failed', wall_s=time.perf_counter() - t0, limit_s=limit, log=str(log))
    try: got = json.loads(result_file.read_text())
    except (OSError, ValueError): got = {}
    if got.get('result') is not None: entry['result'] = got['result']
    if hard is not None: entry.update(status='timeout', error=hard)
    elif got.get('status') in ('ok', 'failed', 'timeout'): entry.update({k: got[k] for k in ('status', 'error', 'traceback') if k in got})
    else: entry['error'] = f'the worker exited with status {rc} without a result'
    if entry['status'] != 'ok': entry['log_tail'] = log_tail(log)
    return entry


def checks_of(entry: dict) -> dict:
    "The checks a part's (possibly partial) result carries."
    return (entry.get('result') or {}).get('checks') or {}


def summary_line(name: str, entry: dict) -> str:
    "A part's one-line summary (its error's first line when it failed)."
    if entry['status'] in ('pending', 'running'): return ''
    if entry['status'] == 'ok':
        try: return GPU_CHECK[name].summary(entry['result'])
        except Exception as e: return f'(no summary: {type(e).__name__}: {e})'
    return entry['error'].strip().splitlines()[0][:300] if (entry.get('error') or '').strip() else ''


def write_report(state: dict, out: Path) -> None:
    "Write gpu_check.json and report.md under `out` (atomically)."
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'gpu_check.json', state)
    parts = state['parts']
    took = f"took {state.get('wall_s', 0):.0f} s" if state.get('finished') else f"{state.get('wall_s', 0):.0f} s so far (running)"
    lines = [f"# ldeq GPU check{' (--quick: tiny sizes, a dry run, not results)' if state['quick'] else ''}",
             f"`{state['command']}` on {state['device']} — started {state['started']}, {took}; time limits "
             f"{sum(e['limit_s'] for e in parts.values()):.0f} s in all.",
             f"**Setting up a GPU machine.** {SETUP_NOTE}"]
    if state.get('error'): lines.append(f"> **{state['error']}**")
    rows = []
    for name, e in parts.items():
        bad = [k for k, v in checks_of(e).items() if v is False]
        rows.append([name, f"**{e['status']}**" if e['status'] not in ('ok', 'pending') else e['status'], fmt(e.get('wall_s'), '.0f'),
                     f"{e['limit_s']:.0f}", ', '.join(f'NOT met: {k}' for k in bad) or ('all met' if checks_of(e) else '–'),
                     summary_line(name, e).replace('|', '/')])
    lines.append(md_table(['part', 'status', 's', 'limit s', 'checks', 'result'], rows))
    for name, e in parts.items():
        if e['status'] in ('pending', 'skipped', 'not run'): continue
        head = f"## {name}: {GPU_CHECK[name].title}\n\n_{e['status']}, {fmt(e.get('wall_s'), '.0f')} s of {e['limit_s']:.0f} s_"
        body = ''
        if e.get('result') is not None:
            try: body = GPU_CHECK[name].report(e['result'])
            except Exception as ex: body = f"(partial result, not reportable: {type(ex).__name__}: {ex})\n\n```json\n{json.dumps(e['result'], indent=1)[:3000]}\n```"
        if e['status'] != 'ok':
            body += f"\n\n**{e['status'].upper()}**: {e.get('error', '')}\n\n```\n{(e.get('traceback') or e.get('log_tail') or '').strip()[-3000:]}\n```"
        lines.append(f'{head}\n\n{body.strip()}')
    tmp = out / '.report.md.tmp'
    tmp.write_text('\n\n'.join(lines) + '\n')
    os.replace(tmp, out / 'report.md')


def cuda_missing(device: str) -> str | None:
    "The one-line message for a CUDA device without CUDA (None when CUDA is there or not asked for)."
    if not device.startswith('cuda') or torch.cuda.is_available(): return None
    build = 'a CPU-only build' if torch.version.cuda is None else f'built with CUDA {torch.version.cuda}, but no GPU is visible'
    return (f'gpu_check: CUDA is not available (torch {torch.__version__}, {build}): a GPU machine needs a CUDA build of '
            f'torch {TORCH_PIN} (README, "On a GPU"); use --device cpu --quick for a dry run')


def parse_limits(text: str | None, plan: Plan) -> dict[str, float]:
    "The plan's limits with `--limits part=seconds,...` overrides."
    limits = dict(plan.limits)
    for item in (text or '').split(','):
        if not item.strip(): continue
        name, _, secs = item.partition('=')
        name = name.strip()
        if name not in limits: raise ValueError(f'--limits: unknown part {name!r}; choose from {",".join(PARTS)}')
        try: limits[name] = float(secs)
        except ValueError: raise ValueError(f'--limits: {item.strip()!r} is not part=seconds') from None
        if not limits[name] > 0: raise ValueError(f'--limits: {name} must be > 0 seconds, got {secs}')
    return limits


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    "Command line."
    ap = doc_parser(__doc__)
    ap.add_argument('--out', default='out/gpu_check', help='output folder (report.md, gpu_check.json, parts/, logs/)')
    ap.add_argument('--device', default='cuda', help="'cuda', 'cuda:N' or 'cpu' (default cuda)")
    ap.add_argument('--quick', action='store_true', help='tiny sizes everywhere (the tiny preset, a few steps): a dry run')
    ap.add_argument('--parts', help=f"comma-separated subset of {','.join(PARTS)} (default: all, in that order)")
    ap.add_argument('--limits', help="override time limits, e.g. 'tables=200,train_run=120' (seconds)")
    ap.add_argument('--worker', choices=PARTS, help=argparse.SUPPRESS)
    ap.add_argument('--result', type=Path, help=argparse.SUPPRESS)
    ap.add_argument('--deadline', type=float, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    try: dev = torch.device(a.device)
    except RuntimeError as e: ap.error(f'--device {a.device!r}: {e}')
    if dev.type not in ('cpu', 'cuda'): ap.error(f"--device must be 'cuda', 'cuda:N' or 'cpu', got {a.device!r}")
    if a.worker is not None: return a
    names = parse_names(ap, '--parts', a.parts, PARTS, 'part')
    a.names = tuple(p for p in PARTS if p in names)
    try: a.limit_s = parse_limits(a.limits, QUICK if a.quick else FULL)
    except ValueError as e: ap.error(str(e))
    return a


def missing_data(name: str, state: dict, a: argparse.Namespace) -> str | None:
    "Why part `name` is skipped: the data part ran and did not leave the synthetic set it needs (else None)."
    data = state['parts'].get('data')
    needs = GPU_CHECK[name].needs_data
    if not needs or data is None or data['status'] == 'ok': return None
    ready = synthetic_ready(QUICK if a.quick else FULL, Path(a.out))
    lacking = [k for k in needs if not ready[k]]
    return f"skipped: the data part ({data['status']}) left no synthetic {' or '.join(lacking)}" if lacking else None


def main(argv: Sequence[str] | None = None) -> int:
    "Run the requested parts one after the other (or, with --worker, one part in this process); the exit status."
    a = parse_args(argv)
    if a.worker is not None: return worker_main(a.worker, a.device, a.quick, Path(a.out), a.result, a.deadline)
    out = Path(a.out)
    state = dict(command=command_line(argv, __name__),
                 started=time.strftime('%Y-%m-%d %H:%M:%S %Z'), device=a.device, quick=a.quick, parts_requested=list(a.names),
                 setup_note=SETUP_NOTE, parts={n: dict(status='pending', limit_s=a.limit_s[n]) for n in a.names})
    missing = cuda_missing(a.device)
    if missing:
        state.update(error=missing, finished=True)
        for e in state['parts'].values(): e.update(status='skipped', error='CUDA is not available')
        write_report(state, out)
        print(missing, file=sys.stderr)
        return 2
    def on_term(signum, frame): raise SystemExit(143)
    signal.signal(signal.SIGTERM, on_term)
    t_all = time.perf_counter()
    write_report(state, out)
    try:
        for name in a.names:
            why = missing_data(name, state, a)
            if why:
                state['parts'][name].update(status='skipped', error=why)
                print(f'== {name}: {why}', flush=True)
                continue
            print(f'== {name} (limit {a.limit_s[name]:g} s)', flush=True)
            state['parts'][name]['status'] = 'running'
            write_report(state, out)
            state['parts'][name] = entry = run_part(name, a, a.limit_s[name])
            state['wall_s'] = time.perf_counter() - t_all
            write_report(state, out)
            bad = [k for k, v in checks_of(entry).items() if v is False]
            print(f"== {name}: {entry['status']} in {entry['wall_s']:.0f} s"
                  + (f"; checks NOT met: {', '.join(bad)}" if bad else '') + f" — {summary_line(name, entry)}", flush=True)
    finally:
        state.update(wall_s=time.perf_counter() - t_all, finished=True)
        for e in state['parts'].values():
            if e['status'] in ('pending', 'running'): e.update(status='not run', error='the check was interrupted first')
        write_report(state, out)
    ok = all(e['status'] == 'ok' and False not in checks_of(e).values() for e in state['parts'].values())
    print(f"wrote {out / 'report.md'} and {out / 'gpu_check.json'} in {state['wall_s']:.0f} s: "
          + ('every part ok, every check met' if ok else 'NOT all parts ok / checks met'), flush=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
