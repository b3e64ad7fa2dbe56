"""The renderer draws exactly what it drew before it was made faster (issue 28): the SHA-256 of every image's bytes
and of its landmarks (float64) on a handful of stills and clip frames, against a fixture recorded with the renderer
of commit 0a54530 (before the speed-up). Stills cover long hair, baldness, beards, glasses, make-up, every occluder
kind and both blurs; the clips (one per hard event mix and an easy one) are rendered frame after frame, so that what
a clip computes once and reuses (its identity's textures and meshes) is checked against the frame-by-frame original.

Float results of NumPy and OpenCV can differ in the last bit between CPU instruction sets, so the fixture holds one
set of hashes per SIMD level it was recorded on (keyed by `simd_key()`); on another level the test is skipped and says
so. The levels were recorded on one AVX-512 machine, the lower ones by switching NumPy's off (`NPY_DISABLE_CPU_FEATURES=
"AVX512_ICL AVX512_SPR"` for X86_V4, `"X86_V4 AVX512_ICL AVX512_SPR"` for X86_V3, the AVX2 level), with
`python tests/test_render_identical.py --record` on the old renderer; OpenCV's AVX-512 switched off
(`OPENCV_CPU_DISABLE=AVX512-SKX,AVX512-CLX`) changed no image."""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / 'fixtures' / 'render_reference.json'
STILLS = {'train': (0, 1, 13, 14, 24, 33), 'test': (2, 3, 4, 17, 26, 36)}
# the clips: pool indices of the 200-clip pool of seed 0 (synthetic-v2's default set: its hard clips 1 and 6, easy clip 4)
CLIPS = {(True, 173): (0, 1, 2, 25, 50, 51, 75, 99), (True, 199): (0, 1, 2, 25, 50, 51, 75, 99),
         (False, 49): (0, 1, 2, 25, 50, 51, 75, 99)}


def simd_key() -> str:
    "NumPy's version and the highest SIMD level it dispatches to here (what changed the landmarks' last bits), OpenCV's version."
    import cv2
    from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    level = ([d for d in __cpu_dispatch__ if __cpu_features__.get(d)] or __cpu_baseline__ or ['none'])[-1]
    return f'numpy {np.__version__} {level}, opencv {cv2.__version__}'


def _h(a) -> str: return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:20]


def _row(r) -> dict:
    return dict(image=_h(r.image), landmarks=_h(r.landmarks.astype(np.float64)), occluded=_h(r.occluded),
                self_occluded=_h(r.self_occluded))


def reference_outputs() -> dict:
    "Hashes of the renders of the fixture's stills and clip frames, rendered by the installed `ldeq.faces`."
    from ldeq.faces.scene import ATTRIBUTE_PROBS, render_scene, sample_scene
    from ldeq.faces.synth import SPLIT_CODES, PoolConfig, SelectedVideosConfig, StillsConfig, make_clip_spec, render_clip
    out, cfg = {}, StillsConfig()
    for split, idx in STILLS.items():
        for i in idx:                                          # the scene of `render_still(cfg, split, i)`
            rng = np.random.default_rng([cfg.seed, SPLIT_CODES[split], i])
            want = [bool(rng.random() < p) for p in ATTRIBUTE_PROBS]
            out[f'{split}_{i}'] = _row(render_scene(sample_scene(rng, (cfg.image_size,) * 2, want, cfg.face_range)))
    pool = PoolConfig(n_pool=200)
    for (hard, i), frames in CLIPS.items():
        spec = make_clip_spec(SelectedVideosConfig(pool, (i,) if hard else (), () if hard else (i,)), hard, 0)
        for t, r in zip(frames, render_clip(spec, frames)): out[f'{spec.clip_id}_{t}'] = _row(r)
    return out


def test_render_identical():
    rec = json.loads(FIXTURE.read_text())
    key = simd_key()
    if key not in rec['levels']:
        pytest.skip(f'{FIXTURE.name} holds no hashes for {key!r} (recorded: {sorted(rec["levels"])})')
    want, got = rec['levels'][key], reference_outputs()
    assert sorted(got) == sorted(want), 'the fixture lists other cases than this test renders'
    bad = {k: [f for f in want[k] if want[k][f] != got[k][f]] for k in want if want[k] != got[k]}
    assert not bad, f'renders differ from the recorded renderer (case: fields): {bad}'


if __name__ == '__main__' and '--record' in sys.argv:
    rec = json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else dict(
        recorded_with='ldeq/faces of commit 0a54530 (the renderer before issue 28)', levels={})
    rec['levels'][simd_key()] = reference_outputs()
    FIXTURE.write_text(json.dumps(rec, indent=1, sort_keys=True) + '\n')
    print(f'recorded {len(rec["levels"][simd_key()])} cases for {simd_key()!r} in {FIXTURE}')
