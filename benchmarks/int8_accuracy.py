"""Accuracy of the speed levers side by side (issue 27, step 3): INT8 vs fp32, RwR k = 1 vs 2, PyTorch bf16 vs fp32.

    python -m benchmarks.int8_accuracy --out out/bench/int8_accuracy [--stills 1000] [--clips N] [--variants ...]
    (or python benchmarks/int8_accuracy.py ...: the same)

Variants (`VARIANTS`), each the shipped demo LDEQ:

- `pytorch fp32`: the reference. Stills: `LDEQ.forward` (Anderson from zeros); clips: RwR k = 2 (`rwr:2`, the
  tracker's method) through `ldeq.video.evaluate.evaluate_video` in the file boxes;
- `pytorch bf16`: the same under bf16 autocast, only where the CPU has AVX512-BF16 or AMX-BF16;
- `onnx fp32 k=2`, `onnx int8 k=2`, `onnx int8-all k=2`, `onnx fp32 k=1`, `onnx int8 k=1`: the `ldeq-export` graphs
  on onnxruntime (`int8`: `--int8`, calibrated on synthetic training crops, with the stem, the cell's 1x1 input and
  output and hourglass level 2 kept fp32; `int8-all`: `--int8 --all-convs`, every convolution quantised). Stills:
  the first-frame graph (8 iterations from zeros; the same for both k); clips: `ldeq.video.onnx_track.onnx_track`
  in the same file boxes.

Measured: NME (%) on the first `--stills` synthetic test stills (`ldeq.paper.results.stills_nmes`), and video NME (%)
and NMF (eq. 10, 11; `ldeq.core.metrics`) on the hard and easy clips of the default synthetic set (first `--clips` of
each). Checks (issue 27): each variant against `pytorch fp32`, each INT8 variant against its fp32 graphs, k = 1
against k = 2: NME at most +2% relative, NMF within ±3% (the per-clip paired change, with its bootstrap 95% interval,
`ldeq.video.evaluate.paired_change`). Writes accuracy.csv (means), checks.csv, per_video.csv, accuracy.md and
accuracy.json under --out.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.int8_accuracy`
    import _launch; _launch.as_module(__file__)

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ldeq.core.assets import demo_checkpoints
from ldeq.core.metrics import video_nme, video_nmf
from ldeq.core.progress import stage, tqdm_bar
from ldeq.core.threads import cpu_capability, set_threads
from ldeq.data.formats import load_clip, read_video_ids
from ldeq.data.videoio import read_frames
from ldeq.models.checkpoint import load_model
from ldeq.paper.results import stills_nmes
from ldeq.video.evaluate import evaluate_video, paired_change, video_means
from ldeq.video.onnx_track import OnnxLDEQ, onnx_track

from .common import cpu_model, write_json
from .track_speed import onnx_graphs

VARIANTS = ('pytorch fp32', 'pytorch bf16', 'onnx fp32 k=2', 'onnx int8 k=2', 'onnx int8-all k=2', 'onnx fp32 k=1', 'onnx int8 k=1')
REFERENCE = 'pytorch fp32'
NME_LIMIT, NMF_LIMIT = 2.0, 3.0          # %: NME at most +2% relative, NMF within ±3%


def _onnx_spec(variant: str) -> tuple[str, int]:
    "('fp32' | 'int8' | 'int8-all', k) of an onnx variant."
    _, precision, k = variant.split()
    return precision, int(k.split('=')[1])


class OnnxFirstFrame(nn.Module):
    "The first-frame graph as a module for `stills_nmes`: landmarks from zeros (the graph's `first_iters` iterations)."
    def __init__(self, m: OnnxLDEQ):
        super().__init__()
        self.m, self.image_size = m, m.size

    def forward(self, x: torch.Tensor):
        return SimpleNamespace(landmarks=torch.from_numpy(self.m.first.run(None, {'crop': x.numpy()})[0]))


def onnx_videos(m: OnnxLDEQ, root: Path, subset: str, limit: int | None, desc: str) -> pd.DataFrame:
    "Per clip of `subset`: NME, NMF, frames/s of `onnx_track` in the file boxes (the columns of `evaluate_video`'s table)."
    rows = []
    for cid in tqdm_bar(read_video_ids(root, subset)[:limit], desc=desc, unit='clip'):
        clip = load_clip(root, cid, check_count=False)
        t0 = time.perf_counter()
        lm = np.stack([r.landmarks for r in onnx_track(m, read_frames(clip.video), boxes=clip.bboxes)])
        secs = time.perf_counter() - t0
        if lm.shape != clip.landmarks.shape: raise ValueError(f'{cid}: tracked {lm.shape}, ground truth {clip.landmarks.shape}')
        n = len(lm)
        rows.append(dict(id=cid, frames=n, nme=video_nme(lm, clip.landmarks), nmf=video_nmf(lm, clip.landmarks),
                         fps=n / secs, nfe=(m.first_iters + (n - 1) * m.k) / n, bootstrapped=0, seconds=secs))
    return pd.DataFrame(rows)


def run_variant(variant: str, out: Path, stills_root: Path, video_root: Path, n_stills: int, clips: int | None,
                model: nn.Module, cache: dict) -> tuple[dict[str, np.ndarray], dict[str, pd.DataFrame]]:
    "Still NMEs (per image, per subset) and per-clip tables (hard, easy) of one variant."
    if variant.startswith('pytorch'):
        ctx = torch.autocast('cpu', dtype=torch.bfloat16) if variant.endswith('bf16') else contextlib.nullcontext()
        with ctx:
            stills = stills_nmes(model, stills_root, limit=n_stills, progress=True, desc=variant)
            vids = {s: evaluate_video(model, video_root, s, 'rwr:2', limit=clips, progress=True).table for s in ('hard', 'easy')}
        return stills, vids
    precision, k = _onnx_spec(variant)
    m = OnnxLDEQ(onnx_graphs(out, k, precision))
    if precision not in cache:                                      # the first-frame graph: the same for k = 1 and 2
        cache[precision] = stills_nmes(OnnxFirstFrame(m), stills_root, limit=n_stills, progress=True, desc=variant)
    return cache[precision], {s: onnx_videos(m, video_root, s, clips, f'{variant} {s}') for s in ('hard', 'easy')}


def checks_for(variants: list[str]) -> list[tuple[str, str]]:
    "(variant, against) pairs: every variant against the reference, INT8 against its fp32 graphs, k = 1 against k = 2."
    pairs = [(v, REFERENCE) for v in variants if v != REFERENCE]
    pairs += [(v, v.replace('int8-all', 'fp32').replace('int8', 'fp32')) for v in variants if 'int8' in v]
    pairs += [(v, v.replace('k=1', 'k=2')) for v in variants if 'k=1' in v]
    return [(v, a) for v, a in pairs if a in variants]


def compare(v: str, a: str, stills: dict, vids: dict) -> list[dict]:
    "Rows of the checks table: still NME, and per subset video NME and NMF (paired over clips), against the limits."
    e, e0 = 100 * stills[v]['full'].mean(), 100 * stills[a]['full'].mean()
    rows = [dict(variant=v, against=a, set='stills', metric='nme', ref=e0, value=e, change=100 * (e / e0 - 1), lo=np.nan, hi=np.nan,
                 limit=f'<= +{NME_LIMIT:g}%', ok=100 * (e / e0 - 1) <= NME_LIMIT)]
    for s in ('hard', 'easy'):
        for col, lim in (('nme', NME_LIMIT), ('nmf', NMF_LIMIT)):
            c = paired_change(vids[a][s], vids[v][s], col)
            ok = c['change'] <= lim if col == 'nme' else abs(c['change']) <= lim
            rows.append(dict(variant=v, against=a, set=s, metric=col, ref=float(vids[a][s][col].mean()), value=float(vids[v][s][col].mean()),
                             change=c['change'], lo=c['lo'], hi=c['hi'], limit=f'<= +{lim:g}%' if col == 'nme' else f'±{lim:g}%', ok=ok))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('--out', default='out/bench/int8_accuracy')
    ap.add_argument('--stills', type=int, default=1000, help='test stills (default 1000: all of the synthetic test split)')
    ap.add_argument('--clips', type=int, default=None, help='clips per subset (default: all)')
    ap.add_argument('--variants', default=','.join(VARIANTS), help=f'of {",".join(VARIANTS)} (default: all the CPU can run)')
    ap.add_argument('--stills-root', help='WFLW-layout stills root (default: the synthetic test stills, generated on first use)')
    ap.add_argument('--video-root', help='WFLW-V-layout root (default: the synthetic default clips, generated on first use)')
    a = ap.parse_args(argv)
    variants = [s.strip() for s in a.variants.split(',') if s.strip()]
    bad = [s for s in variants if s not in VARIANTS]
    if bad: ap.error(f'--variants: unknown {bad}; choose from {",".join(VARIANTS)}')
    if REFERENCE not in variants: ap.error(f'--variants: the reference {REFERENCE!r} is needed for the checks')
    cap = cpu_capability(import_torch=True)
    if 'pytorch bf16' in variants and not cap.bf16:
        variants.remove('pytorch bf16'); print('no AVX512-BF16 / AMX-BF16: pytorch bf16 skipped')
    from ldeq.faces.synth import ensure_synthetic
    stills_root = Path(a.stills_root) if a.stills_root else ensure_synthetic(parts=['test_stills']).wflw
    video_root = Path(a.video_root) if a.video_root else ensure_synthetic(parts=['videos']).wflw_v
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    set_threads(None, batch=32)                   # PyTorch evaluates batches; onnxruntime runs one thread per session
    model = load_model(demo_checkpoints()['ldeq'])
    stills, vids, cache, t0 = {}, {}, {}, time.time()
    for v in variants:
        stage(f'{v}: {a.stills} test stills, the hard and easy clips')
        stills[v], vids[v] = run_variant(v, out, stills_root, video_root, a.stills, a.clips, model, cache)
    means = pd.DataFrame([dict(variant=v, stills_nme=100 * stills[v]['full'].mean(), stills=len(stills[v]['full']),
                               **{f'{s}_{c}': video_means(vids[v][s])[c] for s in ('hard', 'easy') for c in ('nme', 'nmf', 'nfe', 'fps')},
                               clips=len(vids[v]['hard']) + len(vids[v]['easy'])) for v in variants])
    checks = pd.DataFrame([r for v, ag in checks_for(variants) for r in compare(v, ag, stills, vids)])
    per_video = pd.concat([t.assign(variant=v, subset=s) for v in variants for s, t in vids[v].items()], ignore_index=True)
    means.to_csv(out / 'accuracy.csv', index=False); checks.to_csv(out / 'checks.csv', index=False)
    per_video.to_csv(out / 'per_video.csv', index=False)
    head = (f'Demo LDEQ, {len(next(iter(stills.values()))["full"])} synthetic test stills ({stills_root}), '
            f'{means.clips.iloc[0]} clips ({video_root}, file boxes); CPU {cpu_model()}, {cap.summary()}; '
            f'{(time.time() - t0) / 60:.1f} min. NME in %, NMF as eq. 11; fps here are not speed measurements.')
    md = (head + '\n\n' + means.to_markdown(index=False, floatfmt='.3f') + '\n\nChecks (change in %, paired over clips with its '
          'bootstrap 95% interval; limits NME <= +2% relative, NMF within ±3%):\n\n'
          + checks.to_markdown(index=False, floatfmt='.3f') + '\n')
    (out / 'accuracy.md').write_text(md)
    write_json(out / 'accuracy.json', dict(head=head, capability=cap.summary(), means=means.to_dict('records'),
                                            checks=checks.to_dict('records'),
                                            stills_subsets={v: {k: float(100 * e.mean()) if len(e) else None for k, e in s.items()} for v, s in stills.items()}))
    print(md)
    print(f'results in {out}/accuracy.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
