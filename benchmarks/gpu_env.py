"""gpu_check.py's `env` part: GPU name and memory, torch / CUDA / cuDNN versions, TF32 settings, the ldeq version and
git commit, and what this machine still needs beyond the README's set-up."""
from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys

import torch

from ldeq.core.assets import assets_dir, package_version

from .common import cpu_model, cpu_workers, fmt, md_table, safe_git_state
from .gpu_context import TORCH_PIN, Ctx


def nvidia_smi() -> str | None:
    "Name, driver and memory from nvidia-smi, where it is installed."
    exe = shutil.which('nvidia-smi')
    if exe is None: return None
    try:
        r = subprocess.run([exe, '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or r.stderr.strip() or None
    except (OSError, subprocess.TimeoutExpired) as e: return f'{type(e).__name__}: {e}'


def setup_needs(torch_version: str, torch_cuda: str | None, cuda_available: bool) -> list[str]:
    "What this machine still needs beyond the README's set-up, as sentences (empty: nothing)."
    needs = []
    if torch_cuda is None:
        needs.append(f'torch {torch_version} is a CPU-only build: install a CUDA build of torch {TORCH_PIN} (see the note above)')
    elif not cuda_available: needs.append(f'torch {torch_version} is built with CUDA {torch_cuda}, but no GPU is visible (driver?)')
    if torch_version.split('+')[0] != TORCH_PIN:
        needs.append(f'torch {torch_version} here; the project pins torch=={TORCH_PIN} (these numbers are for this version)')
    missing = [m for m in ('papermill', 'ipykernel') if importlib.util.find_spec(m) is None]
    if missing: needs.append(f"the tables part needs {' and '.join(missing)} in this Python ({sys.executable}): pip install {' '.join(missing)}")
    return needs


def run(ctx: Ctx) -> dict:
    "Versions, the device, and what this machine still needs."
    avail = torch.cuda.is_available()
    d = dict(python=platform.python_version(), executable=sys.executable, platform=platform.platform(), cpu=cpu_model(),
             cpu_count=os.cpu_count(), cpu_workers=cpu_workers(), torch=torch.__version__, torch_cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None, cuda_available=avail,
             device=str(ctx.device), ldeq=package_version(), ldeq_file=str(assets_dir().parent / '__init__.py'), **safe_git_state(),
             tf32_convolutions=torch.backends.cudnn.allow_tf32, tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
             cudnn_benchmark=torch.backends.cudnn.benchmark, nvidia_smi=nvidia_smi(), gpu=None)
    if ctx.cuda:
        p = torch.cuda.get_device_properties(ctx.device)
        torch.zeros(1, device=ctx.device)                       # the CUDA context
        d.update(gpu=p.name, gpu_memory_gib=p.total_memory / 2 ** 30, capability=f'{p.major}.{p.minor}',
                 multiprocessors=p.multi_processor_count, gpu_count=torch.cuda.device_count(),
                 bf16_supported=torch.cuda.is_bf16_supported())
    d['needs'] = setup_needs(torch.__version__, torch.version.cuda, avail)
    return d


def summary(r: dict) -> str:
    "One line of the env part."
    gpu = f"{r['gpu']}, {r['gpu_memory_gib']:.1f} GiB" if r.get('gpu') else f"no GPU used ({r['device']})"
    return (f"{gpu}; torch {r['torch']}, CUDA {r['torch_cuda'] or '–'}, cuDNN {r['cudnn'] or '–'}; "
            f"ldeq {r['ldeq']} at {(r.get('commit') or 'unknown commit')[:10]}")


def report(r: dict) -> str:
    "Markdown of the env part."
    rows = [['GPU', r.get('gpu') or '–'], ['GPU memory', fmt(r.get('gpu_memory_gib'), '.1f') + ' GiB'],
            ['compute capability / SMs', f"{r.get('capability', '–')} / {r.get('multiprocessors', '–')}"],
            ['nvidia-smi', r.get('nvidia_smi') or '–'], ['torch.cuda.is_available()', r['cuda_available']],
            ['torch / CUDA / cuDNN', f"{r['torch']} / {r['torch_cuda'] or '–'} / {r['cudnn'] or '–'}"],
            ['bf16 supported', r.get('bf16_supported', '–')],
            ['TF32 convolutions / matmul; cudnn.benchmark', f"{r['tf32_convolutions']} / {r['tf32_matmul']}; {r['cudnn_benchmark']}"],
            ['python', f"{r['python']} ({r['executable']})"], ['platform', r['platform']],
            ['CPU', f"{r['cpu']} ({r['cpu_count']} CPUs, {r['cpu_workers']} usable)"],
            ['ldeq', f"{r['ldeq']} ({r['ldeq_file']})"],
            ['git', f"{r.get('commit') or 'unknown'}{' (dirty)' if r.get('dirty') else ''}"]]
    needs = '\n'.join(f'- {n}' for n in r['needs']) if r['needs'] else '- nothing: this machine has what the check needs'
    return md_table(['', ''], rows) + '\n\nWhat this machine still needs:\n\n' + needs
