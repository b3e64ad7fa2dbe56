"""Robustness suite (issue 8): corrupt inputs, non-face images, solver faults, unsafe or mismatched checkpoints, and a
training process killed with SIGKILL then resumed.

Each test states a property that must hold whatever goes wrong: a clear error of the documented type whose message
names the file (or the parameter), or an output that is finite and flagged, with the other samples of the batch
unaffected; never an exception of another kind and never a silently wrong result. The parsers' fuzzing is in
tests/test_fuzz_parsers.py.
"""
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from ldeq.video import track_cli as CLI, tracking as T, evaluate as VE
from ldeq.data import videoio as V
from ldeq.models.checkpoint import (CheckpointError, UnsafeCheckpointError, load_checkpoint, load_model, load_official, load_state_dict_strict,
                             safe_torch_load, save_checkpoint, save_official)
from ldeq.data.formats import (WFLW_IMAGES, CroppedRecord, CroppedStills, DataFormatError, LandmarkDataset, MissingVideosWarning, WFLWRecord, WFLWStills,
                       iter_video_frames, load_clip, open_stills, wflw_annotation_file, write_precropped_list,
                       write_wflw_annotations)
from ldeq.models.model import LDEQ, LDEQConfig
from ldeq.engine.solvers import METHODS, SolverConfig, solve, solve_fz

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    "Small convolutions on a shared 2-core machine: one thread (restored afterwards)."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def tiny():
    "A random-initialised tiny LDEQ in eval mode."
    torch.manual_seed(0)
    return LDEQ(LDEQConfig.preset('tiny')).eval()


@pytest.fixture(scope='module')
def tiny64(tiny):
    """The same model in float64: batch-independence is checked there, exactly. (In float32 the batched and the
    single-sample convolutions round differently, and an untrained, non-contractive cell amplifies that over the
    solver's iterations, up to ~1e-2 in crop units: numerics, not cross-talk.)"""
    import copy
    return copy.deepcopy(tiny).double()


@pytest.fixture(scope='module')
def tiny_ckpt(tiny, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp('ck') / 'tiny.pt', tiny, tiny.cfg)


def texture(H: int, W: int, seed: int) -> np.ndarray:
    "A smooth random RGB texture (uint8): compresses like a photo, unlike white noise."
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    f, ph = g.uniform(0.05, 0.2, (3, 2)), g.uniform(0, 6.3, 3)
    return np.clip(np.stack([127 + 100 * np.sin(f[c, 0] * xx + f[c, 1] * yy + ph[c]) for c in range(3)], -1), 0, 255).astype(np.uint8)


def imwrite(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def toy_landmarks(seed: int, lo: float, hi: float) -> np.ndarray:
    lm = np.random.default_rng(seed).uniform(lo, hi, (98, 2))
    lm[60], lm[72] = (lo, (lo + hi) / 2), (hi, (lo + hi) / 2)          # outer eye corners apart (NME normaliser)
    return lm


# ==================================================================== corrupt / truncated / zero-length images

def make_stills_root(root: Path, layout: str, ext: str, n: int = 3) -> Path:
    "An official-layout or pre-cropped root with n images (index 1 is the one the tests corrupt)."
    if layout == 'wflw':
        recs = []
        for i in range(n):
            imwrite(root / WFLW_IMAGES / 'ev' / f'{i}.{ext}', texture(80, 96, i))
            lm = toy_landmarks(i, 20, 60)
            recs.append(WFLWRecord(lm, np.r_[lm.min(0), lm.max(0)], np.zeros(6, np.int64), f'ev/{i}.{ext}'))
        write_wflw_annotations(wflw_annotation_file(root, 'train'), recs)
    else:
        recs = []
        for i in range(n):
            imwrite(root / 'train' / f'{i}.{ext}', texture(64, 64, i))
            recs.append(CroppedRecord(f'{i}.{ext}', toy_landmarks(i, 0.2, 0.8)))
        write_precropped_list(root / 'train.txt', recs)
    return root


CORRUPTIONS = {
    'zero_length': lambda b: b'',
    'header_only': lambda b: b[:20],
    'truncated_half': lambda b: b[:len(b) // 2],
    'truncated_end': lambda b: b[:-3],                   # a JPEG loses its end-of-image marker, a PNG its IEND chunk's CRC
    'random_bytes': lambda b: np.random.default_rng(0).integers(0, 256, len(b), dtype=np.uint8).tobytes(),
    'text': lambda b: b'this is not an image\n',
}


@pytest.mark.parametrize('corruption', sorted(CORRUPTIONS))
@pytest.mark.parametrize('ext', ['jpg', 'png'])
@pytest.mark.parametrize('layout', ['wflw', 'precropped'])
def test_corrupt_image_is_a_clear_error_and_spares_the_others(tmp_path, layout, ext, corruption):
    """A damaged image file: `source[i]` raises DataFormatError naming the image and its annotation line, or (only when
    the damage left the pixels intact) returns exactly the intact image's crop; the other items are unaffected."""
    root = make_stills_root(tmp_path / 'root', layout, ext)
    cls = WFLWStills if layout == 'wflw' else CroppedStills
    intact = [item for item in (cls(root, 'train', size=64)[i] for i in range(3))]
    bad = (root / WFLW_IMAGES / 'ev' / f'1.{ext}') if layout == 'wflw' else (root / 'train' / f'1.{ext}')
    bad.write_bytes(CORRUPTIONS[corruption](bad.read_bytes()))
    line = f"{wflw_annotation_file(root, 'train') if layout == 'wflw' else root / 'train.txt'}:2"
    for src in (cls(root, 'train', size=64), open_stills(root, 'train', size=64)):
        assert type(src) is cls
        try: crop, lm = src[1]
        except Exception as e:                                            # noqa: BLE001 -- the type is the property
            assert isinstance(e, DataFormatError), f'{type(e).__name__}: {e}'
            assert str(bad) in str(e) and line in str(e), str(e)
        else:                                                             # accepted: then it must be the real image
            assert corruption == 'truncated_end' and ext == 'png', f'{corruption} {ext} accepted'
            assert np.array_equal(crop, intact[1][0]) and np.array_equal(lm, intact[1][1])
        for i in (0, 2):
            assert all(np.array_equal(a, b) for a, b in zip(src[i], intact[i]))
    ds = LandmarkDataset(open_stills(root, 'train', size=64))                # the torch dataset passes the error on
    assert ds[0]['image'].shape == (3, 64, 64)
    if corruption != 'truncated_end' or ext != 'png':
        with pytest.raises(DataFormatError, match=re.escape(str(bad))):
            next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))


def test_missing_image_or_a_folder_in_its_place_fails_at_construction(tmp_path):
    root = make_stills_root(tmp_path / 'root', 'precropped', 'png')
    (root / 'train' / '2.png').unlink()
    (root / 'train' / '2.png').mkdir()
    with pytest.raises(FileNotFoundError, match=r'2\.png.*train\.txt:3'):
        open_stills(root, 'train', size=64)


# ==================================================================== corrupt / truncated / zero-length videos

def write_video(path: Path, n: int, fourcc: str = 'mp4v', H: int = 48, W: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (W, H))
    assert vw.isOpened()
    for t in range(n): vw.write(cv2.cvtColor(np.roll(texture(H, W, seed), 2 * t, axis=1), cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def write_wflwv_root(root: Path, lengths: dict, video_lengths: dict | None = None, fourcc: str = 'mp4v') -> Path:
    "A WFLW-V root; video i has video_lengths[i] frames and lengths[i] landmark / box rows (all 'hard')."
    video_lengths = video_lengths or lengths
    for d in ('videos', 'landmarks', 'bboxes'): (root / d).mkdir(parents=True, exist_ok=True)
    for vid, T in lengths.items():
        write_video(root / 'videos' / f'{vid}.mp4', video_lengths[vid], fourcc, seed=len(vid))
        lm = np.stack([toy_landmarks(t, 10, 40) for t in range(T)])
        np.save(root / 'landmarks' / f'{vid}.npy', lm)
        np.save(root / 'bboxes' / f'{vid}.npy', np.concatenate([lm.min(1), lm.max(1)], 1))
    (root / 'hard_video_IDs.txt').write_text(''.join(f'{v}\n' for v in lengths))
    (root / 'easy_video_IDs.txt').write_text('')
    return root


BAD_VIDEOS = {
    'zero_length': lambda b: b'',
    'random_bytes': lambda b: np.random.default_rng(1).integers(0, 256, len(b), dtype=np.uint8).tobytes(),
    'truncated_mp4': lambda b: b[:int(0.6 * len(b))],    # mp4v from OpenCV keeps its index (moov) at the end
    'text': lambda b: b'not a video\n',
}


def cli(capsys, *args) -> tuple[int, str]:
    "Run `ldeq-track` in-process; (exit status, stderr)."
    try: rc = CLI.main([str(a) for a in args])
    except SystemExit as e: rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize('damage', sorted(BAD_VIDEOS))
def test_unreadable_video_is_a_clear_error_everywhere(tmp_path, tiny, tiny_ckpt, capsys, damage):
    """An unreadable video: every reader (data and video modules, tracking, WFLW-V evaluation, the CLI) raises a
    VideoError / DataFormatError naming the file; the CLI exits with status 2 and leaves no output file."""
    root = write_wflwv_root(tmp_path / 'wv', {'good': 5, 'bad': 5})
    p = root / 'videos' / 'bad.mp4'
    p.write_bytes(BAD_VIDEOS[damage](p.read_bytes()))
    bb = np.load(root / 'bboxes' / 'bad.npy')
    calls = {
        'video_info': lambda: V.video_info(p),
        'read_frames': lambda: list(V.read_frames(p)),
        'iter_video_frames': lambda: list(iter_video_frames(p)),
        'iter_video_frames(expected)': lambda: list(iter_video_frames(p, expected=5)),
        'load_clip': lambda: load_clip(root, 'bad'),
        'clip.frames': lambda: list(load_clip(root, 'bad', check_count=False).frames()),
        'track': lambda: list(T.track(tiny, [T.VideoSource(V.read_frames(p), boxes=bb, name='bad')])),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError) as ei: call()
        assert isinstance(ei.value, (V.VideoError, DataFormatError)), (name, type(ei.value).__name__, ei.value)
        assert str(p) in str(ei.value), (name, str(ei.value))
    # the WFLW-V evaluation (issue 26) goes on without it, loudly: a warning and the coverage name the file
    with pytest.warns(MissingVideosWarning, match=re.escape(str(p))): ev = VE.evaluate_video(tiny, root, 'hard', progress=False)
    assert ev.table['id'].tolist() == ['good'] and ev.coverage.line() == 'hard 1/2' and str(p) in ev.coverage.missing['bad']
    out, lmo = tmp_path / 'o.mp4', tmp_path / 'lm.npy'
    rc, err = cli(capsys, p, '--checkpoint', tiny_ckpt, '--out', out, '--landmarks', lmo, '--no-progress')
    assert rc == 2 and str(p) in err and not out.exists() and not lmo.exists()
    assert not [f for f in tmp_path.iterdir() if f.name.startswith('.')]          # no temporary file either


@pytest.fixture(scope='module')
def truncated_avi(tmp_path_factory):
    "A 20-frame MJPG AVI cut to 40 %: its header still says 20 frames, only some decode."
    p = write_video(tmp_path_factory.mktemp('avi') / 'cut.avi', 20, 'MJPG')
    b = p.read_bytes()
    p.write_bytes(b[:int(0.4 * len(b))])
    n = sum(1 for _ in V.read_frames(p))
    assert V.video_info(p).n_frames == 20 and 0 < n < 20
    return p, n


def test_truncated_video_with_intact_header(tmp_path, tiny, tiny_ckpt, capsys, truncated_avi):
    """A video cut short behind an intact header (it opens, then runs out of frames): every reader that knows how many
    frames to expect raises an error naming the file; the CLI without boxes tracks what decodes but warns."""
    p, n = truncated_avi
    boxes = np.tile([5.0, 5.0, 50.0, 40.0], (20, 1))
    for call in (lambda: list(iter_video_frames(p, expected=20)),
                 lambda: list(T.track(tiny, [T.VideoSource(V.read_frames(p), boxes=boxes, name=str(p))]))):
        with pytest.raises(ValueError) as ei: call()
        assert isinstance(ei.value, (V.VideoError, DataFormatError)) and str(p) in str(ei.value), ei.value
        assert f'{n} frames' in str(ei.value)
    np.save(tmp_path / 'boxes.npy', boxes)
    rc, err = cli(capsys, p, '--checkpoint', tiny_ckpt, '--boxes', tmp_path / 'boxes.npy', '--landmarks', tmp_path / 'a.npy', '--no-progress')
    assert rc == 2 and str(p) in err and not (tmp_path / 'a.npy').exists()
    rc, err = cli(capsys, p, '--checkpoint', tiny_ckpt, '--whole-frame', '--landmarks', tmp_path / 'b.npy', '--no-overlay', '--no-progress')
    assert rc == 0 and np.load(tmp_path / 'b.npy').shape == (n, 98, 2)
    assert 'warning' in err and f'{n} of the 20 frames' in err, err


@pytest.mark.parametrize('T_lm', [4, 8])
def test_landmark_file_length_differs_from_video(tmp_path, tiny, T_lm):
    "A 6-frame video whose landmark and box files have 4 (shorter) or 8 (longer) rows: clear errors, never a partial score."
    root = write_wflwv_root(tmp_path / 'wv', {'v1': T_lm}, {'v1': 6})
    lm_file, video = root / 'landmarks' / 'v1.npy', root / 'videos' / 'v1.mp4'
    with pytest.raises(DataFormatError, match=f'reports 6 frames but landmarks and boxes have {T_lm}'):
        load_clip(root, 'v1')
    with pytest.raises(DataFormatError) as ei: list(load_clip(root, 'v1', check_count=False))
    assert str(video) in str(ei.value) and str(T_lm) in str(ei.value)
    for boxes in ('file', 'track'):                     # the evaluation leaves it out (issue 26): nothing else to score, a clear error
        with pytest.warns(MissingVideosWarning), pytest.raises(ValueError) as ei: VE.evaluate_video(tiny, root, 'hard', boxes=boxes, progress=False)
        assert 'coverage hard 0/1' in str(ei.value) and str(video) in str(ei.value) and f'reports 6 frames but landmarks and boxes have {T_lm}' in str(ei.value)
    np.save(root / 'bboxes' / 'v1.npy', np.zeros((6, 4)))                  # boxes and landmarks disagree as well
    with pytest.raises(DataFormatError, match=f'{T_lm} landmark frames but 6 box frames'): load_clip(root, 'v1')
    with pytest.warns(MissingVideosWarning), pytest.raises(ValueError, match=f'{T_lm} landmark frames but 6 box frames'):
        VE.evaluate_video(tiny, root, 'hard', progress=False)


# ==================================================================== non-face images through the model

def normalised(img: np.ndarray) -> torch.Tensor:
    from ldeq.core.preprocess import normalize_image
    return normalize_image(np.ascontiguousarray(img))[0]


def non_face_batch() -> tuple[list[str], torch.Tensor]:
    g = np.random.default_rng(3)
    imgs = {'texture': texture(64, 64, 7), 'uniform_noise': g.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            'flat_grey': np.full((64, 64, 3), 128, np.uint8), 'black': np.zeros((64, 64, 3), np.uint8),
            'white': np.full((64, 64, 3), 255, np.uint8), 'stripes': np.tile(np.repeat([0, 255], 2)[None, :, None], (64, 16, 3)).astype(np.uint8)}
    return list(imgs), torch.stack([normalised(v) for v in imgs.values()])


def assert_flags_consistent(stats, tol: float, max_iters: int):
    "converged == residual < tol; never converged and failed; a sample that neither converged nor failed used all steps."
    r = stats.residual
    assert torch.equal(stats.converged, torch.nan_to_num(r, nan=math.inf) < tol)
    assert not (stats.converged & stats.failed).any()
    assert (stats.steps <= max_iters).all()
    assert (stats.steps[~stats.converged & ~stats.failed] == max_iters).all()


def test_non_face_images_finite_flagged_and_batch_independent(tiny, tiny64):
    """Noise, flat grey, black, white, stripes next to a textured image: finite landmarks, solver flags consistent with
    the residuals, and (float64) every sample exactly as when it runs alone: no cross-talk through the batch or the
    solver."""
    names, x = non_face_batch()
    tol, K = tiny.cfg.deq.fwd.tol, tiny.cfg.deq.fwd.max_iters
    with torch.no_grad():
        out32 = tiny(x)
        out = tiny64(x.double())
        alone = [tiny64(x[i:i + 1].double()) for i in range(len(x))]
    for o in (out32, out):
        assert torch.isfinite(o.landmarks).all() and torch.isfinite(o.heatmaps).all()
        assert_flags_consistent(o.stats, tol, K)
    for i, name in enumerate(names):
        torch.testing.assert_close(out.landmarks[i], alone[i].landmarks[0], atol=1e-10, rtol=0, msg=name)
        assert out.stats.steps[i] == alone[i].stats.steps[0] and out.stats.converged[i] == alone[i].stats.converged[0], name


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_nan_image_is_flagged_and_does_not_touch_its_neighbours(tiny, tiny64, dtype):
    "A NaN pixel in one image: that sample is flagged failed (not converged); the others are finite (float64: equal to their solo runs)."
    model = tiny if dtype == torch.float32 else tiny64
    _, x = non_face_batch()
    x = x[:3].clone().to(dtype)
    x[1, :, 10, 10] = float('nan')
    with torch.no_grad():
        out = model(x)
        solo = [model(x[i:i + 1]) for i in (0, 2)]
    assert out.stats.failed.tolist() == [False, True, False] and not out.stats.converged[1]
    for k, i in enumerate((0, 2)):
        assert torch.isfinite(out.landmarks[i]).all() and not solo[k].stats.failed.any()
        if dtype == torch.float64: torch.testing.assert_close(out.landmarks[i], solo[k].landmarks[0], atol=1e-10, rtol=0)


@pytest.mark.parametrize('method', ['frame-by-frame', 'rwr:2'])
def test_non_face_video_in_a_batch_leaves_the_other_video_unchanged(tiny64, method):
    "Batched tracking (float64): a noise video next to a texture video; the texture video's landmarks equal its solo run's."
    g = np.random.default_rng(0)
    noise = [g.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    tex = [np.roll(texture(48, 64, 5), 2 * t, 1) for t in range(4)]
    box = np.tile([4.0, 4.0, 60.0, 44.0], (4, 1))
    src = lambda frames, name: T.VideoSource(iter(frames), boxes=box, name=name)
    both = T.track_videos(tiny64, [src(noise, 'noise'), src(tex, 'tex')], method, batch_size=2)
    solo = T.track_videos(tiny64, [src(tex, 'tex')], method, batch_size=1)
    assert np.isfinite(both[0].landmarks).all() and both[0].failed.dtype == bool
    np.testing.assert_allclose(both[1].landmarks, solo[0].landmarks, atol=1e-8, rtol=0)
    np.testing.assert_array_equal(both[1].nfe, solo[0].nfe)


# ==================================================================== solver faults

def invariants(f, z0, z, s, cfg: SolverConfig, check_residual: bool = True):
    "Properties every solve must have, whatever f does."
    assert z.shape == z0.shape and z.dtype == z0.dtype and torch.isfinite(z).all()
    assert z.data_ptr() != z0.data_ptr()                                   # never the caller's tensor
    assert torch.equal(s.nfe, s.steps)
    assert_flags_consistent(s, cfg.tol, cfg.max_iters)
    assert (s.failed | s.converged | (s.steps == cfg.max_iters)).all()
    if check_residual and cfg.max_iters > 0:                               # the reported residual is the returned z's
        with torch.no_grad():
            F = f(z).reshape(len(z), -1).double(); G = F - z.reshape(len(z), -1).double()
        r = G.norm(dim=1) / (F.norm(dim=1) + cfg.eps) if cfg.stop_mode == 'rel' else G.norm(dim=1)
        ok = torch.isfinite(r) & ~s.failed
        torch.testing.assert_close(r[ok], s.residual[ok].double(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize('method', METHODS)
def test_cell_returning_nan_everywhere(method):
    calls = [0]
    def f(z): calls[0] += 1; return torch.full_like(z, float('nan'))
    z0 = torch.randn(3, 5)
    cfg = SolverConfig(method=method, max_iters=20)
    z, fz, s = solve_fz(f, z0, cfg)
    assert torch.equal(z, z0) and calls[0] == 1                            # the first NaN stops every sample
    assert s.failed.all() and not s.converged.any() and (s.steps == 1).all() and (s.best_step == 0).all()
    invariants(f, z0, z, s, cfg, check_residual=False)


@pytest.mark.parametrize('method', METHODS)
def test_nan_in_one_sample_later_spares_the_others(method):
    "Sample 1 turns NaN from the 4th call on: it is flagged with its best finite iterate; samples 0 and 2 solve as alone."
    A = torch.tensor([[0.5, 0.1], [-0.2, 0.3]], dtype=torch.float64)
    calls = [0]
    def f(z, poison=True):
        out = z @ A.T + 1
        if poison and calls[0] >= 3: out[1] = float('nan')
        calls[0] += 1
        return out
    z0 = torch.zeros(3, 2, dtype=torch.float64)
    cfg = SolverConfig(method=method, max_iters=40, tol=1e-10)
    z, s = solve(f, z0, cfg)
    assert s.failed.tolist() == [False, True, False] and s.converged.tolist() == [True, False, True]
    assert torch.isfinite(z).all() and 0 < s.best_step[1] <= 3
    z_alone, s_alone = solve(lambda v: f(v, poison=False), z0[[0, 2]], cfg)
    torch.testing.assert_close(z[[0, 2]], z_alone, atol=1e-12, rtol=0)
    assert s.steps[[0, 2]].tolist() == s_alone.steps.tolist()


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('case', ['unstable_2z+1', 'no_fixed_point_z+1', 'overflow', 'oscillating', 'chaotic'])
def test_non_contractive_cells(method, case):
    """Cells a fixed-point iteration cannot solve: finite result, flags consistent; where a solver reports convergence
    it has found a true fixed point."""
    dt = torch.float32 if case == 'overflow' else torch.float64
    f = {'unstable_2z+1': lambda z: 2 * z + 1, 'no_fixed_point_z+1': lambda z: z + 1,
         'overflow': lambda z: 1e30 * z + 1, 'oscillating': lambda z: 2 - z,
         'chaotic': lambda z: 3.99 * z * (1 - z)}[case]
    z0 = {'chaotic': torch.linspace(0.1, 0.9, 8, dtype=dt).reshape(4, 2)}.get(case, torch.zeros(4, 2, dtype=dt))
    for stop_mode in ('rel', 'abs'):
        cfg = SolverConfig(method=method, max_iters=30, tol=1e-6, stop_mode=stop_mode)
        z, s = solve(f, z0, cfg)
        invariants(f, z0, z, s, cfg, check_residual=case != 'overflow')
        if case == 'no_fixed_point_z+1' and stop_mode == 'abs': assert not s.converged.any()
        if method == 'fpi' and case in ('unstable_2z+1', 'oscillating', 'overflow'): assert not s.converged.any()
        if case == 'overflow': assert s.failed.all() and torch.equal(z, z0)   # the only finite iterate is z0
        conv = s.converged
        if conv.any():
            assert (f(z[conv]) - z[conv]).abs().max() <= 2e-6 * max(1.0, f(z[conv]).abs().max().item())


@pytest.mark.parametrize('method', METHODS)
def test_max_iters_zero_and_one(method):
    "max_iters=0 (documented: return z0 without calling f) and 1 (one evaluation, z0 returned): flagged, finite."
    calls = [0]
    def f(z): calls[0] += 1; return 0.5 * z + 1
    z0 = torch.randn(3, 4)
    z, fz, s = solve_fz(f, z0, SolverConfig(method=method, max_iters=0))
    assert calls[0] == 0 and fz is None and torch.equal(z, z0) and z.data_ptr() != z0.data_ptr()
    assert (s.steps == 0).all() and not s.converged.any() and not s.failed.any() and torch.isnan(s.residual).all()
    assert s.trace.shape == (3, 0)
    z, fz, s = solve_fz(f, z0, SolverConfig(method=method, max_iters=1))
    assert calls[0] == 1 and torch.equal(z, z0) and torch.equal(fz, f(z0))
    assert (s.steps == 1).all() and not s.converged.any()
    z, _, s = solve_fz(lambda v: v.clone(), z0, SolverConfig(method=method, max_iters=1))   # z0 already a fixed point
    assert s.converged.all() and torch.equal(z, z0)


@pytest.mark.parametrize('bad', [-1, 2.5, True, None, '3'])
def test_invalid_max_iters_is_a_clear_error(tiny, bad):
    with pytest.raises(ValueError, match='max_iters'): SolverConfig(max_iters=bad)
    if isinstance(bad, int) and not isinstance(bad, bool):
        with pytest.raises(ValueError, match='max_iters'), torch.no_grad(): tiny(torch.zeros(1, 3, 64, 64), max_iters=bad)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(METHODS), B=st.integers(1, 4), d=st.integers(1, 6), rho=st.floats(0.05, 3.0),
       max_iters=st.integers(0, 25), tol=st.sampled_from([0.0, 1e-10, 1e-4, 0.1]), stop_mode=st.sampled_from(['rel', 'abs']),
       m=st.integers(1, 6), seed=st.integers(0, 2**16), poison=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 10))))
def test_solver_invariants_on_random_affine_maps(method, B, d, rho, max_iters, tol, stop_mode, m, seed, poison):
    """Random affine maps z -> Az + b with spectral radius up to 3 (contractive or not), optionally one sample
    poisoned with NaN from some call on: no exception, finite result, consistent flags, the reported residual is the
    returned iterate's, and the poisoned sample is flagged while the others do not notice it."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    A = (Q * (torch.rand(d, generator=g, dtype=torch.float64) * 2 - 1) * rho) @ Q.T
    b = torch.randn(B, d, generator=g, dtype=torch.float64)
    z0 = torch.randn(B, d, generator=g, dtype=torch.float64)

    def make_f(bb, row=None, from_call=0):
        calls = [0]
        def f(z):
            out = z @ A.T + bb
            if row is not None and calls[0] >= from_call: out[row] = float('nan')
            calls[0] += 1
            return out
        return f
    row = poison[0] if poison is not None and poison[0] < B else None
    cfg = SolverConfig(method=method, max_iters=max_iters, tol=tol, stop_mode=stop_mode, m=m)
    z, s = solve(make_f(b, row, poison[1] if row is not None else 0), z0, cfg)
    invariants(make_f(b), z0, z, s, cfg, check_residual=row is None)
    if row is not None and max_iters > poison[1] and not s.converged[row]:
        assert s.failed[row] and s.steps[row] <= poison[1] + 1
        keep = [i for i in range(B) if i != row]
        if keep:
            z_k, s_k = solve(make_f(b[keep]), z0[keep], cfg)
            torch.testing.assert_close(z[keep], z_k, atol=1e-9, rtol=1e-9)
            assert s.converged[keep].tolist() == s_k.converged.tolist() and s.steps[keep].tolist() == s_k.steps.tolist()


def test_ldeq_with_nan_weights_is_flagged_not_crashed(tiny, tmp_path, capsys):
    """NaN weights: the forward runs, every sample is flagged failed (none converged); the solver's own iterate stays
    finite (extra_step=False returns it: z0); training steps do not crash; tracking and the CLI stop with a clear error.
    With the extra step the landmarks are NaN: no finite answer is meaningful, and the flag says so."""
    import copy
    from ldeq.training.train import train_step
    bad = copy.deepcopy(tiny)
    with torch.no_grad(): bad.cell.hourglass.same2.conv.weight[0, 0, 1, 1] = float('nan')
    _, x = non_face_batch()
    with torch.no_grad():
        out = bad(x)
        raw = bad(x, extra_step=False)
    assert out.stats.failed.all() and not out.stats.converged.any()
    assert torch.equal(raw.heatmaps, bad.z0(x)) and torch.isfinite(raw.landmarks).all()
    assert (torch.isfinite(out.landmarks).flatten(1).all(1) | out.stats.failed).all()     # non-finite => flagged
    opt = torch.optim.SGD(bad.parameters(), lr=0.0)
    loss, steps = train_step(bad, x[:2], torch.full((2, 98, 2), 0.5), opt)
    assert torch.isnan(loss) and steps.shape == (2,)
    frames = [texture(48, 64, 1)] * 2
    with pytest.raises(FloatingPointError, match='nanvid.*non-finite landmarks'):
        list(T.track(bad.eval(), [T.VideoSource(iter(frames), boxes=np.tile([4., 4., 60., 44.], (2, 1)), name='nanvid')]))
    ck = save_checkpoint(tmp_path / 'nan.pt', bad, bad.cfg)
    clip = write_video(tmp_path / 'in.mp4', 2)
    rc, err = cli(capsys, clip, '--checkpoint', ck, '--whole-frame', '--landmarks', tmp_path / 'lm.npy', '--no-overlay', '--no-progress')
    assert rc == 2 and 'non-finite landmarks' in err and not (tmp_path / 'lm.npy').exists()


def test_ldeq_max_iters_zero_and_one(tiny):
    "The model with max_iters 0 / 1: finite landmarks, steps 0 / 1, not converged (random image, random weights)."
    _, x = non_face_batch()
    with torch.no_grad():
        for k in (0, 1):
            out = tiny(x, max_iters=k)
            assert torch.isfinite(out.landmarks).all() and (out.stats.steps == k).all() and not out.stats.converged.any()


# ==================================================================== checkpoint safety

class SystemPayload:
    "Unpickling calls os.system('touch MARKER')."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f'touch {shlex.quote(self.marker)}',))


class ExecPayload:
    "Unpickling calls exec(...) creating MARKER."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (exec, (f'open({self.marker!r}, "w").close()',))


def write_evil(path: Path, payload, container: str, good: Path) -> Path:
    "A checkpoint file carrying `payload`, alone or hidden in an otherwise valid checkpoint, in several pickle forms."
    import pickle
    ck = safe_torch_load(good)
    if container == 'bare': torch.save(payload, path)
    elif container == 'train_state': ck['train_state'] = {'note': payload}; torch.save(ck, path)
    elif container == 'state_dict': ck['state_dict']['extra'] = payload; torch.save(ck, path)
    elif container == 'official_args': torch.save({'args': payload, 'state_dict': ck['state_dict']}, path)
    elif container == 'legacy_format': ck['meta'] = payload; torch.save(ck, path, _use_new_zipfile_serialization=False)
    elif container == 'raw_pickle':
        with open(path, 'wb') as fh: pickle.dump({'format': 'ldeq-checkpoint', 'x': payload}, fh, protocol=2)
    return path


@pytest.mark.parametrize('payload_cls', [SystemPayload, ExecPayload])
@pytest.mark.parametrize('container', ['bare', 'train_state', 'state_dict', 'official_args', 'legacy_format', 'raw_pickle'])
def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path, tiny_ckpt, capsys, payload_cls, container):
    marker = tmp_path / 'pwned'
    evil = write_evil(tmp_path / 'evil.pt', payload_cls(marker), container, tiny_ckpt)
    loaders = {'safe_torch_load': lambda: safe_torch_load(evil),
               'safe_torch_load(allow Namespace)': lambda: safe_torch_load(evil, allow=[__import__('argparse').Namespace]),
               'load_checkpoint': lambda: load_checkpoint(evil), 'load_official': lambda: load_official(evil),
               'checkpoint.load_model': lambda: load_model(evil)}
    for name, load in loaders.items():
        with pytest.raises(UnsafeCheckpointError) as ei: load()
        assert str(evil) in str(ei.value) and 'refusing' in str(ei.value), (name, ei.value)
        assert not marker.exists(), f'{name} ran the payload'
    rc, err = cli(capsys, write_video(tmp_path / 'v.mp4', 2), '--checkpoint', evil, '--landmarks', tmp_path / 'l.npy', '--no-progress')
    assert rc == 2 and str(evil) in err and not marker.exists()
    if container in ('bare', 'legacy_format'):                 # positive control: the plain unpickler does run it
        torch.load(evil, weights_only=False)
        assert marker.exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(0.0, 0.9999), legacy=st.booleans())
def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path, tiny_ckpt, frac, legacy):
    "A checkpoint cut anywhere (either serialization format): CheckpointError naming the file, never EOFError, OSError..."
    src = tiny_ckpt
    if legacy:
        src = tmp_path / 'legacy.pt'
        if not src.exists(): torch.save(safe_torch_load(tiny_ckpt), src, _use_new_zipfile_serialization=False)
    data = src.read_bytes()
    cut = tmp_path / 'cut.pt'
    cut.write_bytes(data[:int(frac * len(data))])
    for load in (safe_torch_load, load_checkpoint):
        with pytest.raises(CheckpointError) as ei: load(cut)
        assert str(cut) in str(ei.value)


def test_checkpoint_of_another_preset_names_the_mismatch(tiny, tiny_ckpt, tmp_path):
    "A tiny checkpoint where a small (or paper) model is expected: the error lists every differing field / tensor."
    differing = ['image_size', 'heatmap_size', 'injection_width', 'base_width', 'width_increment']
    for expect in ('small', LDEQConfig.preset('small')):
        with pytest.raises(CheckpointError) as ei: load_checkpoint(tiny_ckpt, expect=expect)
        msg = str(ei.value)
        assert str(tiny_ckpt) in msg and all(f'{k}: ' in msg for k in differing), msg
        assert 'image_size: 64 != 128' in msg and 'base_width: 16 != 64' in msg
    with pytest.raises(CheckpointError, match='injection_width: 16 != 224'): load_checkpoint(tiny_ckpt, expect='paper')
    small = LDEQ(LDEQConfig.preset('small'))                                # the tiny weights into a small model
    with pytest.raises(CheckpointError) as ei: load_state_dict_strict(small, safe_torch_load(tiny_ckpt)['state_dict'], 'tiny.pt')
    assert 'mis-shaped keys' in str(ei.value) and 'tail.0.conv.weight: checkpoint (4, 3, 7, 7) vs model (16, 3, 7, 7)' in str(ei.value)
    ck = safe_torch_load(tiny_ckpt)                                         # a config that lies about its weights
    ck['config'] = LDEQConfig.preset('small').to_dict()
    torch.save(ck, tmp_path / 'liar.pt')
    with pytest.raises(CheckpointError, match=r'liar\.pt does not fit the model: mis-shaped keys'): load_checkpoint(tmp_path / 'liar.pt')
    off = save_official(tiny, tmp_path / 'off.pt')                          # the published format, edited to another size
    ck = safe_torch_load(off, allow=[__import__('argparse').Namespace])
    ck['args'].cell_base_width = 64
    torch.save(ck, tmp_path / 'off2.pt')
    with pytest.raises(CheckpointError, match=r'off2\.pt does not fit the model: .*mis-shaped'): load_official(tmp_path / 'off2.pt')


# ==================================================================== kill -9 during training, then --resume

def make_precropped(root: Path, n_train: int = 8, n_test: int = 2) -> Path:
    for split, n, s0 in (('train', n_train, 0), ('test', n_test, 100)):
        recs = []
        for i in range(n):
            imwrite(root / split / f'{i}.png', texture(64, 64, s0 + i))
            recs.append(CroppedRecord(f'{i}.png', toy_landmarks(s0 + i, 0.2, 0.8)))
        write_precropped_list(root / f'{split}.txt', recs)
    return root


RUN_NAMES = {'last.pt', 'best.pt', 'log.csv', 'curves.png'}


def run_args(data: Path, out: Path, epochs: int = 3) -> list[str]:
    return ['--model', 'ldeq', '--preset', 'tiny', '--solver-iters', '3', '--dataset', 'wflw_cropped', '--data-root', str(data),
            '--epochs', str(epochs), '--batch-size', '2', '--lr', '3e-3', '--warmup-epochs', '0.5', '--grad-clip', '1.0',
            '--ckpt-every-steps', '1', '--threads', '1', '--no-progress', '--out-dir', str(out)]


def ldeq_train(log: Path, *args) -> subprocess.Popen:
    "`python -m ldeq.training.train ARGS` in a subprocess, output to `log`."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
    with open(log, 'w') as fh:
        return subprocess.Popen([sys.executable, '-m', 'ldeq.training.train', *args], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def loads_everything(out: Path):
    "Every file a loader would pick up loads; anything else is a dot-named temporary file."
    from ldeq.training.train import read_log_csv
    for f in out.iterdir():
        if f.name.startswith('.'):
            assert f.name.endswith(('.tmp', '.tmp.png')), f'unexpected leftover {f.name}'
            continue
        assert f.name in RUN_NAMES, f'unexpected file {f.name}'
        if f.suffix == '.pt': load_checkpoint(f)
        elif f.suffix == '.csv': read_log_csv(f)


@pytest.mark.parametrize('epochs,kill_at', [(2, 3), pytest.param(3, 4, marks=pytest.mark.slow)])
def test_sigkill_during_training_then_resume_equals_uninterrupted(tmp_path, epochs, kill_at):
    """`python -m ldeq.training.train` on a real pre-cropped dataset (with the real augmentation), checkpointing every step, is
    killed with SIGKILL, preferably while a checkpoint is being written; at every moment observed, last.pt loads; after
    the kill no file a loader would read is half-written; `--resume` then ends with the weights (<= 1e-6) and the log
    of an uninterrupted run. (tests/test_train.py kills an in-memory-data child; this one goes through the CLI.)"""
    data = make_precropped(tmp_path / 'data')
    out, ref = tmp_path / 'killed', tmp_path / 'ref'
    args = lambda o: run_args(data, o, epochs)
    total = 4 * epochs
    p = ldeq_train(tmp_path / 'killed.log', *args(out))
    seen, mid_save, t0 = [], False, time.time()
    try:
        while time.time() - t0 < 240:
            if p.poll() is not None: pytest.fail(f"training ended before the kill ({p.returncode}): {(tmp_path / 'killed.log').read_text()[-2000:]}")
            if (out / 'last.pt').exists():
                seen.append(load_checkpoint(out / 'last.pt').train_state['global_step'])   # must load at any moment
                temps = [f for f in out.iterdir() if f.name.startswith('.last.pt.')]
                if seen[-1] >= kill_at and (temps or seen[-1] >= total - 4):
                    mid_save = bool(temps)
                    break
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    assert p.returncode == -signal.SIGKILL, p.returncode
    assert seen == sorted(seen) and seen[-1] >= kill_at
    loads_everything(out)
    killed_at = load_checkpoint(out / 'last.pt').train_state['global_step']
    assert kill_at <= killed_at < total
    for log, a in (('resumed.log', args(out) + ['--resume']), ('ref.log', args(ref))):
        r = ldeq_train(tmp_path / log, *a)
        assert r.wait(timeout=300) == 0, (tmp_path / log).read_text()[-3000:]
    a, b = load_checkpoint(out / 'last.pt'), load_checkpoint(ref / 'last.pt')
    assert a.train_state['global_step'] == b.train_state['global_step'] == total
    worst = max((va - b.model.state_dict()[k]).abs().max().item() for k, va in a.model.state_dict().items())
    assert worst <= 1e-6, f'max weight difference {worst:.3g} (killed at step {killed_at}, mid-save: {mid_save})'
    hist = lambda ck: [(h['epoch'], h['global_step'], h['train_loss'], h['val_nme']) for h in ck.train_state['history']]
    assert hist(a) == hist(b)
    loads_everything(out)
    print(f'killed at step {killed_at} (mid-save: {mid_save}); resumed == uninterrupted, max |dw| = {worst:.2g}')


def test_resume_with_another_preset_names_the_mismatch(tmp_path, capsys):
    "Resuming a tiny run as a small one is refused, naming the differing model fields (nothing is overwritten)."
    from ldeq.training.train import main
    data = make_precropped(tmp_path / 'data', n_train=2, n_test=1)
    out = tmp_path / 'run'
    args = run_args(data, out)
    args[args.index('--epochs') + 1] = '1'
    assert main(args) == 0
    before = (out / 'last.pt').read_bytes()
    bad = [a if a != 'tiny' else 'small' for a in args] + ['--resume']
    with pytest.raises(CheckpointError) as ei: main(bad)
    assert 'image_size: 64 != 128' in str(ei.value) and str(out / 'last.pt') in str(ei.value)
    assert (out / 'last.pt').read_bytes() == before
    marker = tmp_path / 'pwned'                                            # and a last.pt carrying code is refused
    write_evil(out / 'last.pt', SystemPayload(marker), 'train_state', out / 'last.pt')
    with pytest.raises(UnsafeCheckpointError): main(args + ['--resume'])
    assert not marker.exists()
