"""Render speed (issue 28): frames/s per core of the synthetic renderer against the renderer before issue 28, on the
same machine in one run.

    python -m benchmarks.render_speed --out benchmarks/results/render_speed [--clips 4] [--frames 25] [--stills 24]
                                      [--repeats 5] [--before 0a54530]
    (or python benchmarks/render_speed.py ...: the same)

The renderer before (`ldeq/faces/{face,render,scene}.py` of commit `--before`, read with `git show` into a temporary
package) and the installed one do the same work, one process, one thread (OpenMP and OpenCV), interleaved repeat by
repeat so that a busy neighbour slows both alike:

- `clip frames`: `--frames` frames spread over each of `--clips` clips of the default video set (half hard, half
  easy), rendered as `render_clip` renders them (one background per clip; now also one `RenderCache`);
- `stills`: the first `--stills` training stills of the default stills set (`render_still`'s scenes);
- `landmarks`: the ground-truth landmarks of every frame of those clips (`landmarks_of`, what a clip's spec computes
  before anything is rendered).

Per repeat and renderer the CPU time (`time.process_time`: what one core spends) and the wall time of the whole work
are taken; the table gives their medians over `--repeats` per frame, frames/s per core (1 / CPU time per frame) and
the ratio new / before. Every image, landmark and occlusion flag is compared byte for byte, so both renderers are
timed on the same pixels (the run stops at the first difference). The header has the CPU, torch's kernel level
(`torch.backends.cpu.get_cpu_capability()`), NumPy's SIMD level and the load average before and after (a load above
the core count means the timings shared the cores). Results: render_speed.csv and render_speed.md in --out.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.render_speed`
    import _launch; _launch.as_module(__file__)

os.environ.setdefault('OMP_NUM_THREADS', '1')

import cv2
import numpy as np
import pandas as pd

from ldeq.faces.scene import ATTRIBUTE_PROBS, render_background, render_scene, sample_scene
from ldeq.faces.synth import (SPLIT_CODES, StillsConfig, landmarks_of, make_clip_spec, recorded_selection,
                              render_clip)

from .common import REPO, command_line, cpu_model, git_state, md_table

BEFORE = '0a54530'        # the last commit with the renderer before issue 28
FILES = ('face', 'render', 'scene')


def load_before(ref: str, root: Path):
    "The modules face, render, scene of `ldeq/faces` at commit `ref`, as the package `faces_before` under `root`."
    pkg = root / 'faces_before'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    for name in FILES:
        r = subprocess.run(['git', 'show', f'{ref}:ldeq/faces/{name}.py'], cwd=REPO, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f'render_speed: cannot read ldeq/faces/{name}.py at --before {ref} ({r.stderr.strip()}); '
                             f'a clone with that commit is needed (not a shallow one)')
        (pkg / f'{name}.py').write_text(r.stdout.replace('from ..core.', 'from ldeq.core.'))
    sys.path.insert(0, str(root))
    import faces_before.face as face, faces_before.scene as scene
    return face, scene


def _same(a, b, what: str) -> None:
    "Stop unless two renders are byte for byte the same."
    for f in ('image', 'landmarks', 'occluded', 'self_occluded'):
        if not np.array_equal(getattr(a, f), getattr(b, f)):
            raise SystemExit(f'render_speed: {what}: the {f} differ between the renderer before and now')


def workloads(n_clips: int, n_frames: int, n_stills: int):
    "The clips (spec, frame indices) and still scenes timed."
    sel = recorded_selection()
    n_hard = (n_clips + 1) // 2
    specs = [make_clip_spec(sel, True, i) for i in range(min(n_hard, sel.n_hard))]
    specs += [make_clip_spec(sel, False, i) for i in range(min(n_clips - len(specs), sel.n_easy))]
    clips = [(s, sorted(set(np.linspace(0, len(s.scenes) - 1, n_frames).round().astype(int).tolist()))) for s in specs]
    cfg, stills = StillsConfig(), []
    for i in range(n_stills):                                # the scene of `render_still(cfg, 'train', i)`
        rng = np.random.default_rng([cfg.seed, SPLIT_CODES['train'], i])
        want = [bool(rng.random() < p) for p in ATTRIBUTE_PROBS]
        stills.append(sample_scene(rng, (cfg.image_size,) * 2, want, cfg.face_range))
    return clips, stills


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--clips', type=int, default=4, help='clips of the default set (half hard, half easy)')
    ap.add_argument('--frames', type=int, default=25, help='frames per clip, spread over it')
    ap.add_argument('--stills', type=int, default=24, help='training stills')
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--before', default=BEFORE, help='the commit whose renderer is the "before"')
    a = ap.parse_args(argv)
    if min(a.clips, a.frames, a.stills, a.repeats) < 1: ap.error('--clips, --frames, --stills and --repeats must be >= 1')
    cv2.setNumThreads(1)
    import torch
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    npy_level = ([d for d in __cpu_dispatch__ if __cpu_features__.get(d)] or ['baseline'])[-1]
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        old_face, old_scene = load_before(a.before, Path(tmp))
        clips, stills = workloads(a.clips, a.frames, a.stills)
        n_clip_frames = sum(len(idx) for _, idx in clips)
        n_lm = sum(len(s.scenes) for s, _ in clips)

        def old_clips():
            out = []
            for spec, idx in clips:
                H, W = spec.scenes[0].image_size
                bg = old_scene.render_background(np.random.default_rng(spec.scenes[0].background_seed), H, W)
                out += [old_scene.render_scene(spec.scenes[i], background=bg) for i in idx]
            return out

        def new_clips():
            return [r for spec, idx in clips for r in render_clip(spec, idx)]

        def old_landmarks():
            out = []
            for spec, _ in clips:
                for sc in spec.scenes:
                    shape = old_face.FaceShape(sc.identity, sc.expression)
                    cam, R, T = old_face.place_camera(shape, sc.pose, sc.face_centre, sc.face_size)
                    out.append(old_face.project_landmarks(shape, R, T, cam)[0])
            return out

        work = {'clip frames': (n_clip_frames, old_clips, new_clips),
                'stills': (len(stills), lambda: [old_scene.render_scene(s) for s in stills], lambda: [render_scene(s) for s in stills]),
                'landmarks': (n_lm, old_landmarks, lambda: [landmarks_of(sc) for spec, _ in clips for sc in spec.scenes])}
        times = {(w, r): [] for w in work for r in ('before', 'now')}
        for rep in range(a.repeats):
            for w, (n, old, new) in work.items():
                order = [('before', old), ('now', new)] if rep % 2 == 0 else [('now', new), ('before', old)]
                res = {}
                for r, fn in order:
                    c, t = time.process_time(), time.perf_counter()
                    res[r] = fn()
                    times[w, r].append((time.process_time() - c, time.perf_counter() - t))
                if rep == 0:                                 # the same bytes, or no timing
                    for x, y in zip(res['before'], res['now']):
                        if w == 'landmarks':
                            if not np.array_equal(x, y): raise SystemExit('render_speed: landmarks differ')
                        else: _same(x, y, w)
            print(f'repeat {rep + 1}/{a.repeats} done', flush=True)
    load1 = os.getloadavg()
    rows = []
    for w, (n, _, _) in work.items():
        for r in ('before', 'now'):
            cpu, wall = median(t[0] for t in times[w, r]) / n, median(t[1] for t in times[w, r]) / n
            rows.append(dict(work=w, renderer=r, frames=n, repeats=a.repeats, cpu_ms_per_frame=1e3 * cpu,
                             wall_ms_per_frame=1e3 * wall, frames_per_s_per_core=1 / cpu))
    df = pd.DataFrame(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / 'render_speed.csv', index=False)
    table = []
    for w in work:
        b, n = df[(df.work == w) & (df.renderer == 'before')].iloc[0], df[(df.work == w) & (df.renderer == 'now')].iloc[0]
        table.append([w, int(b.frames), f'{b.cpu_ms_per_frame:.1f}', f'{n.cpu_ms_per_frame:.1f}', f'{b.frames_per_s_per_core:.1f}',
                      f'{n.frames_per_s_per_core:.1f}', f'{b.cpu_ms_per_frame / n.cpu_ms_per_frame:.2f}×',
                      f'{b.wall_ms_per_frame / n.wall_ms_per_frame:.2f}×'])
    g = git_state()
    md = [f'# Render speed (issue 28)', '',
          f'`{command_line()}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {g["commit"]}{" (dirty)" if g["dirty"] else ""}, '
          f'before = `{a.before}`.', '',
          f'CPU: {cpu_model()}, {os.cpu_count()} cores; torch kernel level `{torch.backends.cpu.get_cpu_capability()}`, '
          f'NumPy {np.__version__} SIMD `{npy_level}`, OpenCV {cv2.__version__}; one thread. Load average before / after: '
          f'{load0[0]:.2f} / {load1[0]:.2f} (above {os.cpu_count()}: the timings shared the cores).', '',
          md_table(['work', 'frames', 'CPU ms/frame before', 'now', 'frames/s/core before', 'now', 'speed-up (CPU)', 'speed-up (wall)'], table),
          '', f'Medians over {a.repeats} interleaved repeats; every frame byte for byte the same before and now.']
    (a.out / 'render_speed.md').write_text('\n'.join(md) + '\n')
    print('\n'.join(md))


if __name__ == '__main__':
    main()
