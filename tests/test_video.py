"""The `ldeq-track` console script and the video benchmark script, run as a user would (subprocesses).

The behaviour of `ldeq.video.track_cli` itself is tested in nbs/06_video/10_track_cli.ipynb; here we check what only a separate process
shows: that the installed entry point `ldeq.video.track_cli:main` works and reports errors with exit status 2, and that
benchmarks/video_methods.py runs end to end and writes its JSON.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}    # small convolutions: 2 threads on a shared 2-core machine can crawl


def toy_frame(t: int, H: int = 96, W: int = 128, seed: int = 0) -> np.ndarray:
    "Frame t of a drifting smooth texture (RGB uint8)."
    g = np.random.default_rng(seed)
    fx, fy, ph = g.uniform(0.03, 0.12, 3), g.uniform(0.03, 0.12, 3), g.uniform(0, 6.3, 3)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = [127 + 100 * np.sin(fx[c] * (xx - 1.5 * t) + fy[c] * yy + ph[c]) for c in range(3)]
    return np.clip(np.stack(img, -1), 0, 255).astype(np.uint8)


def write_clip(path, frames_rgb, fps: float = 25.0) -> Path:
    "Write RGB frames as an mp4v video."
    h, w = frames_rgb[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
    assert vw.isOpened()
    for f in frames_rgb: vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return Path(path)


def write_toy_root(root, lengths=(6, 5, 7), H: int = 96, W: int = 128, n_hard: int = 2) -> Path:
    "A WFLW-V-layout root of short synthetic clips whose ground-truth landmarks drift with the box."
    root = Path(root)
    for d in ('videos', 'landmarks', 'bboxes'): (root / d).mkdir(parents=True, exist_ok=True)
    tmpl = np.random.default_rng(1).uniform(0.1, 0.9, (98, 2)); tmpl[60], tmpl[72] = (0.15, 0.4), (0.85, 0.4)
    ids = [f'clip{i}' for i in range(len(lengths))]
    for i, (vid, T) in enumerate(zip(ids, lengths)):
        write_clip(root / 'videos' / f'{vid}.mp4', [toy_frame(t, H, W, seed=i) for t in range(T)])
        lm = tmpl[None] * 60 + np.stack([30 + np.arange(T) * (1 + i), 20 + 0.5 * np.arange(T)], -1)[:, None]
        np.save(root / 'landmarks' / f'{vid}.npy', lm)
        np.save(root / 'bboxes' / f'{vid}.npy', np.concatenate([lm.min(1), lm.max(1), np.ones((T, 1))], 1))
    (root / 'hard_video_IDs.txt').write_text('\n'.join(ids[:n_hard]) + '\n')
    (root / 'easy_video_IDs.txt').write_text('\n'.join(ids[n_hard:]) + '\n')
    return root


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    "A random-initialised tiny LDEQ saved as an ldeq checkpoint."
    from ldeq.models.checkpoint import save_checkpoint
    from ldeq.models.model import LDEQ, LDEQConfig
    torch.manual_seed(0)
    m = LDEQ(LDEQConfig.preset('tiny')).eval()
    return save_checkpoint(tmp_path_factory.mktemp('ck') / 'tiny.pt', m, m.cfg)


def run(*args, cwd=ROOT):
    "Run a command, capturing its output."
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


def test_console_script(tmp_path, tiny_ckpt):
    "`ldeq-track` (the installed entry point): overlay with the input's frame count, landmarks (T, 98, 2), exit 2 on errors."
    exe = shutil.which('ldeq-track', path=str(BIN)) or pytest.skip('ldeq-track is not installed in this environment')
    clip = write_clip(tmp_path / 'in.mp4', [toy_frame(t) for t in range(7)])
    r = run(exe, clip, '--checkpoint', tiny_ckpt, '--box', 30, 20, 90, 80, '--rwr', 2, '--out', tmp_path / 'o.mp4',
            '--landmarks', tmp_path / 'lm.npy', '--no-progress')
    assert r.returncode == 0, r.stderr
    cap = cv2.VideoCapture(str(tmp_path / 'o.mp4'))
    n = 0
    while cap.read()[0]: n += 1
    cap.release()
    assert n == 7 and np.load(tmp_path / 'lm.npy').shape == (7, 98, 2)
    (tmp_path / 'junk.mp4').write_bytes(b'\x00' * 100)
    r = run(exe, tmp_path / 'junk.mp4', '--checkpoint', tiny_ckpt, '--out', tmp_path / 'o2.mp4')
    assert r.returncode == 2 and 'ldeq-track: error:' in r.stderr and 'junk.mp4' in r.stderr
    r = run(exe, clip, '--checkpoint', tmp_path / 'none.pt', '--out', tmp_path / 'o2.mp4')
    assert r.returncode == 2 and 'none.pt' in r.stderr and not (tmp_path / 'o2.mp4').exists()


def test_benchmark_script(tmp_path, tiny_ckpt):
    "benchmarks/video_methods.py on a random tiny LDEQ and a tiny clip set: JSON with every method, the EMA choice and the targets."
    root = write_toy_root(tmp_path / 'root', lengths=(5, 4, 6))
    out = tmp_path / 'video.json'
    r = run(sys.executable, '-m', 'benchmarks.video_methods', '--checkpoint', tiny_ckpt, '--root', root, '--out', out,
            '--ema-weights', 0.15, 0.5, '--batch-size', 2, '--no-progress', '--threads', 1)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert [s['subset'] for s in res['subsets']] == ['hard', 'easy']
    hard = res['subsets'][0]
    assert [m['method'] for m in hard['methods']] == ['frame-by-frame', 'rwr:2', 'ema:0.15', 'ema:0.5']
    assert hard['methods'][0]['frames'] == 9 and hard['methods'][0]['nfe'] == 12
    assert set(hard['targets']) == {'fps_at_least_2x', 'nme_within_1pct', 'nmf_at_least_10pct_lower'}
    assert hard['rwr_vs_frame_by_frame']['nfe_rwr'] == pytest.approx((12 + 4 * 2 + 12 + 3 * 2) / 9)
