"""The data_scripts command lines: --help, and a tiny end-to-end run (synthetic set -> pre-cropped -> checks)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / 'data_scripts'


def run(script, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize('script', ['make_synthetic.py', 'prepare_wflw.py', 'check_dataset.py'])
def test_help(script):
    r = run(script, '--help')
    assert r.returncode == 0 and 'usage:' in r.stdout and len(r.stdout) > 300


def test_tiny_pipeline(tmp_path):
    r = run('make_synthetic.py', '--out', tmp_path / 'syn', '--n-train', 3, '--n-test', 2, '--image-size', 96,
            '--pool', 0, '--n-hard', 1, '--n-easy', 1, '--frames', 4, '--video-size', 64, '--workers', 1, '--no-progress')
    assert r.returncode == 0, r.stderr
    r = run('prepare_wflw.py', tmp_path / 'syn' / 'wflw', '--out', tmp_path / 'pre', '--size', 64, '--no-progress')
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    assert counts['train'] == 3 and counts['test'] == 2
    for root, layout in [(tmp_path / 'syn' / 'wflw', 'wflw'), (tmp_path / 'pre', 'precropped'), (tmp_path / 'syn' / 'wflw_v', 'wflw_v')]:
        grid = tmp_path / f'{layout}.png'
        r = run('check_dataset.py', root, '--grid', grid, '--n', 4, '--decode', '--no-progress')
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout[:r.stdout.rindex('}') + 1])
        assert rep['layout'] == layout and grid.stat().st_size > 1000
    assert rep['hard']['frames_total'] == 4 and rep['easy']['n_videos'] == 1
    assert rep['coverage'] == 'hard 1/1, easy 1/1' and 'coverage: hard 1/1, easy 1/1' in r.stdout
    vroot = tmp_path / 'syn' / 'wflw_v'                                           # a video gone: reported, listed, no crash
    gone = (vroot / 'hard_video_IDs.txt').read_text().split()[0]
    (vroot / 'videos' / f'{gone}.mp4').unlink()
    r = run('check_dataset.py', vroot, '--grid', tmp_path / 'v.png', '--missing', tmp_path / 'missing.csv', '--no-progress')
    assert r.returncode == 0, r.stderr
    assert 'coverage: hard 0/1, easy 1/1' in r.stdout and (tmp_path / 'missing.csv').read_text().splitlines()[1].startswith(f'{gone},hard,missing: ')
    from ldeq.data.formats import CroppedStills, WFLWStills
    a, b = WFLWStills(tmp_path / 'syn' / 'wflw', 'test', size=64), CroppedStills(tmp_path / 'pre', 'test', size=64)
    assert np.allclose(a[1][1], b[1][1], atol=1e-7)


def test_errors_are_clear(tmp_path):
    r = run('check_dataset.py', tmp_path / 'nothing')
    assert r.returncode != 0 and 'dataset root not found' in r.stderr
    (tmp_path / 'x').mkdir()
    r = run('prepare_wflw.py', tmp_path / 'x', '--out', tmp_path / 'y')
    assert r.returncode != 0 and 'list_98pt_rect_attr_train.txt' in r.stderr


def test_pool_selection(tmp_path):
    "--pool: score a tiny pool with the ensemble, keep a hard and an easy clip, render only those; a rerun reuses the selection."
    args = ('--out', tmp_path / 'syn', '--parts', 'videos', '--seed', 5, '--pool', 8, '--keep', 2, '--frames', 8,
            '--video-size', 96, '--workers', 2, '--no-progress')          # 2: the scorer's spawned render workers
    r = run('make_synthetic.py', *args)
    assert r.returncode == 0, r.stderr
    from ldeq.data.formats import read_video_ids
    from ldeq.video.selection import Selection
    sel = Selection.load(tmp_path / 'syn' / 'wflw_v_selection.json')
    assert sel.config.pool.seed == 5 and len(sel.scores) == 8 and sel.ensemble == ['v1_ldeq.pt', 'v1_shg.pt', 'v1_unet.pt']
    score = {s['index']: s['score'] for s in sel.scores}
    assert min(score[i] for i in sel.hard) > max(score[i] for i in sel.easy)
    root = tmp_path / 'syn' / 'wflw_v'
    assert read_video_ids(root, 'hard') == [f'pool_{i:04d}' for i in sel.hard] and len(list((root / 'videos').glob('*.mp4'))) == 4
    r = run('make_synthetic.py', *args)
    assert r.returncode == 0 and 'reusing' in r.stdout, r.stderr
    r = run('make_synthetic.py', *args, '--keep', 3)                       # the last --keep wins: other settings
    assert r.returncode != 0 and 'other settings' in r.stderr


def test_default_pool_uses_the_recorded_selection(tmp_path):
    "With seed 0 and the default pool and ensemble, make_synthetic takes the package's recorded selection (no scoring)."
    import argparse
    import importlib.util
    from ldeq.faces.synth import recorded_selection
    spec = importlib.util.spec_from_file_location('make_synthetic', SCRIPTS / 'make_synthetic.py')
    ms = importlib.util.module_from_spec(spec); spec.loader.exec_module(ms)
    a = argparse.Namespace(pool=400, frames=100, video_size=256, fps=25.0, seed=0, keep=0, score_every=4, no_flip=False,
                           selection=None, ensemble=None, workers=1, no_progress=True)
    assert ms.selected_videos(a, tmp_path) == recorded_selection()
    assert not (tmp_path / 'wflw_v_selection.json').exists()                   # nothing scored, nothing written
