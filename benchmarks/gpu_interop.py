"""gpu_check.py's `interop` part: the official checkpoint format on the device (`save_official` →
`load_official(map_location=device)`): the same weights, the same configuration, the CPU model's landmarks within 1e-4."""
from __future__ import annotations

import contextlib
import time

import torch

from ldeq.models.model import LDEQ

from .common import MIB, ldeq_config, md_table, yes_no
from .gpu_context import Ctx

INTEROP_TOL = 1e-4            # max |landmark difference| (crop-normalised units) between the device and the CPU


@contextlib.contextmanager
def tf32(enabled: bool):
    "cuDNN / matmul TF32 set to `enabled` inside the block."
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try: yield
    finally: torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def run(ctx: Ctx) -> dict:
    "save_official → load_official(map_location=device): same weights, same config, the CPU model's landmarks within 1e-4."
    from ldeq.models.checkpoint import config_diff, load_official, save_official
    p, dev = ctx.plan, ctx.device
    cfg = ldeq_config(p.preset, exact_iters=True)
    torch.manual_seed(0)
    model = LDEQ(cfg).eval()
    x = torch.randn(p.interop_batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1))
    path = ctx.out / 'interop_official.pth.tar'
    save_official(model, path)
    t0 = time.perf_counter()
    with torch.no_grad(): ref = model(x)
    cpu_s = time.perf_counter() - t0
    loaded = load_official(path, map_location=str(dev))
    sd, ld = model.state_dict(), loaded.state_dict()
    same_weights = sd.keys() == ld.keys() and all(torch.equal(sd[k], ld[k].cpu()) for k in sd)
    diffs = {}
    for name, on in (('tf32_off', False), ('tf32_on', True)):
        if name == 'tf32_on' and not ctx.cuda: continue
        with tf32(on), torch.no_grad(): out = loaded(x.to(dev))
        diffs[name] = dict(landmarks=(out.landmarks.float().cpu() - ref.landmarks).abs().max().item(),
                           heatmaps=(out.heatmaps.float().cpu() - ref.heatmaps).abs().max().item(),
                           steps=out.stats.steps.cpu().tolist())
    res = dict(preset=p.preset, batch=p.interop_batch, file_mib=path.stat().st_size / MIB, config_diff=config_diff(cfg, loaded.cfg),
               same_weights=same_weights, loaded_device=str(next(loaded.parameters()).device), cpu_steps=ref.stats.steps.tolist(),
               cpu_seconds=cpu_s, diffs=diffs, tol=INTEROP_TOL)
    path.unlink()
    res['checks'] = dict(same_weights=same_weights, same_config=not res['config_diff'],
                         on_device=res['loaded_device'].split(':')[0] == dev.type,
                         landmarks_within_tol=diffs['tf32_off']['landmarks'] <= INTEROP_TOL)
    return res


def summary(r: dict) -> str:
    "One line of the interop part."
    d = r['diffs']
    return (f"max abs Δ landmarks vs CPU {d['tf32_off']['landmarks']:.2e} (TF32 off)"
            + (f", {d['tf32_on']['landmarks']:.2e} (TF32 on)" if 'tf32_on' in d else '') + f"; weights identical: {r['same_weights']}")


def report(r: dict) -> str:
    "Markdown of the interop part."
    rows = [[k, f"{v['landmarks']:.3e}", f"{v['heatmaps']:.3e}", v['steps']] for k, v in r['diffs'].items()]
    c = r['checks']
    return '\n\n'.join([
        f"`{r['preset']}` LDEQ, random weights, tol 0 (every solve makes the same iterations), written with "
        f"`save_official` ({r['file_mib']:.1f} MiB), read with `load_official(map_location='{r['loaded_device']}')`, run "
        f"on a fixed input of {r['batch']} images and compared with the CPU model's outputs (CPU solver steps "
        f"{r['cpu_steps']}).",
        md_table(['device run', 'max abs Δ landmarks', 'max abs Δ heatmaps', 'solver steps'], rows),
        f"- weights bit for bit: {yes_no(c['same_weights'])}; configuration unchanged: {yes_no(c['same_config'])}"
        f"{' (' + '; '.join(r['config_diff']) + ')' if r['config_diff'] else ''}; on the device: {yes_no(c['on_device'])}\n"
        f"- landmarks within {r['tol']:g} of the CPU's (TF32 off): {yes_no(c['landmarks_within_tol'])}"])
