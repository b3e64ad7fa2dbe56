"""A temporal method of one's own (issue 24): defined here, registered, and run through `track`, `evaluate_methods` and
`ldeq-track` (in process, and as a console script that imports it with `--plugin`), with no change to the package.

The toy method blends each frame's frame-by-frame landmarks with the previous frame's output (an exponential moving
average in crop coordinates, carried as the method's state): with fixed boxes it must equal the EMA of the
frame-by-frame trajectory, which `ldeq.video.filters.EMA` computes independently.
"""
import dataclasses
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from ldeq.models.checkpoint import save_checkpoint
from ldeq.models.model import LDEQ, LDEQConfig
from ldeq.video.filters import EMA
from ldeq.video.methods import METHODS, FrameByFrame, TemporalMethod, method_label, parse_method, register_method
from ldeq.video.tracking import VideoSource, track
from ldeq.video.evaluate import evaluate_methods
from ldeq.video import track_cli
from test_video import toy_frame, write_clip, write_toy_root

BOX = np.array([30., 20., 90., 80.])


@dataclass(frozen=True)
class Blend(TemporalMethod):
    "Frame by frame, blended with the previous output: z_n = w·z_{n−1} + (1 − w)·(frame-by-frame landmarks of frame n)."
    w: float = 0.5
    stateful: ClassVar[bool] = True

    def start(self, model, x):
        out = FrameByFrame().start(model, x)
        return dataclasses.replace(out, state=out.landmarks.clone())

    def step(self, model, x, state):
        out = FrameByFrame().start(model, x)
        lm = self.w * state + (1 - self.w) * out.landmarks
        return dataclasses.replace(out, landmarks=lm, state=lm)


@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return LDEQ(LDEQConfig.preset('tiny')).eval()


@pytest.fixture(autouse=True, scope='module')
def registered():
    register_method('test-blend', Blend)
    yield
    METHODS.pop('test-blend', None)


def fixed_box_clip(T=6):
    return VideoSource((toy_frame(t) for t in range(T)), boxes=np.tile(BOX, (T, 1)), name='toy')


def test_names_round_trip():
    assert parse_method('test-blend:0.25') == Blend(0.25) and parse_method('test-blend:w=0.7') == Blend(0.7)
    assert method_label(Blend(0.25)) == 'test-blend:0.25' and method_label(Blend()) == 'test-blend:0.5'
    with pytest.raises(ValueError, match="Blend.w expects float"): parse_method('test-blend:much')


def test_track_runs_the_registered_method(tiny):
    fbf = np.stack([r.landmarks for r in track(tiny, [fixed_box_clip()], 'frame-by-frame')])
    got = [r for r in track(tiny, [fixed_box_clip()], 'test-blend:0.3')]
    # fixed box: the crop map is the same affine map every frame, so a blend in crop coordinates is the same blend in pixels
    np.testing.assert_allclose(np.stack([r.landmarks for r in got]), EMA(0.3)(fbf), atol=1e-4)
    assert got[0].nfe == 12 and not np.allclose(got[-1].landmarks, fbf[-1])


def test_evaluate_methods_with_the_registered_method(tiny, tmp_path):
    root = write_toy_root(tmp_path / 'wflwv')
    table, evs = evaluate_methods(tiny, root, 'hard', ['frame-by-frame', 'test-blend:0.5', 'ema:0.5'], progress=False,
                                  keep_predictions=True, batch_size=2)
    assert table['method'].tolist() == ['frame-by-frame', 'test-blend:0.5', 'ema:0.5']
    # a stateful method: the blend's first frame is frame-by-frame's, later frames differ; all finite
    for vid, lm in evs['test-blend:0.5'].predictions.items():
        np.testing.assert_allclose(lm[0], evs['frame-by-frame'].predictions[vid][0], atol=1e-6)
        assert np.isfinite(lm).all() and not np.allclose(lm[1:], evs['frame-by-frame'].predictions[vid][1:])


@pytest.fixture(scope='module')
def clip_and_ckpt(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    return write_clip(d / 'clip.mp4', [toy_frame(t) for t in range(5)]), save_checkpoint(d / 'tiny.pt', tiny, tiny.cfg), d


def test_ldeq_track_in_process(tiny, clip_and_ckpt):
    clip, ck, d = clip_and_ckpt
    out = d / 'blend.npy'
    assert track_cli.main([str(clip), '--checkpoint', str(ck), '--box', *map(str, BOX), '--method', 'test-blend:0.5',
                           '--landmarks', str(out), '--no-overlay', '--no-progress']) == 0
    from ldeq.data.videoio import read_frames
    ref = np.stack([r.landmarks for r in track(tiny, [VideoSource(read_frames(clip), init_box=BOX)], Blend(0.5))])
    np.testing.assert_allclose(np.load(out), ref, atol=1e-9)
    # an offline method (a filter) through the CLI: frame by frame, smoothed, overlay drawn in a second pass
    assert track_cli.main([str(clip), '--checkpoint', str(ck), '--box', *map(str, BOX), '--method', 'ema:0.5',
                           '--landmarks', str(d / 'ema.npy'), '--out', str(d / 'ema.mp4'), '--no-progress']) == 0
    fbf = np.stack([r.landmarks for r in track(tiny, [VideoSource(read_frames(clip), init_box=BOX)])])
    np.testing.assert_allclose(np.load(d / 'ema.npy'), EMA(0.5)(fbf), atol=1e-9)


def test_ldeq_track_console_script_with_plugin(clip_and_ckpt, tmp_path):
    clip, ck, _ = clip_and_ckpt
    (tmp_path / 'my_methods.py').write_text(textwrap.dedent('''
        import dataclasses
        from dataclasses import dataclass
        from ldeq.video.methods import FrameByFrame, TemporalMethod, register_method

        @dataclass(frozen=True)
        class Shifted(TemporalMethod):
            "Frame by frame, every landmark moved right by dx crop widths (a method a test can check by hand)."
            dx: float = 0.0
            def start(self, model, x):
                out = FrameByFrame().start(model, x)
                return dataclasses.replace(out, landmarks=out.landmarks + x.new_tensor([self.dx, 0.0]))

        register_method('shifted', Shifted)
    '''))
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(tmp_path)}
    exe = os.path.join(os.path.dirname(sys.executable), 'ldeq-track')
    base = [exe, str(clip), '--checkpoint', str(ck), '--box', *map(str, BOX), '--no-overlay', '--no-progress']
    a, b = tmp_path / 'a.npy', tmp_path / 'b.npy'
    r = subprocess.run(base + ['--frame-by-frame', '--landmarks', str(a)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(base + ['--plugin', 'my_methods', '--method', 'shifted:0.1', '--landmarks', str(b)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'with shifted:0.1' in r.stdout
    side = (BOX[2] - BOX[0]) * 1.2                                  # the crop is the box scaled by 1.2 (appendix A)
    np.testing.assert_allclose(np.load(b) - np.load(a), np.broadcast_to([0.1 * side, 0.0], np.load(a).shape), atol=1e-6)
    r = subprocess.run(base + ['--method', 'shifted:0.1', '--landmarks', str(b)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown method 'shifted:0.1'" in r.stderr
