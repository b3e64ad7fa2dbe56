"""`ldeq-export` on the shipped demo LDEQ, as a user runs it: onnxruntime reproduces PyTorch within 1e-4 (issue 16).

The notebook nbs/06_video/09_export.ipynb tests the graphs on a random `tiny` LDEQ; only the trained demo model is the
acceptance case (a random model is not a contraction, so rounding grows along its unrolled iterations).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = ROOT / 'ldeq' / 'assets' / 'demo_ldeq.pt'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


def test_ldeq_export_cli_parity(tmp_path):
    out = tmp_path / 'demo.onnx'
    r = subprocess.run([str(BIN / 'ldeq-export'), str(DEMO), str(out)], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file() and (tmp_path / 'demo.first.onnx').is_file()
    diff = float(r.stdout.rsplit('max |diff|', 1)[1].split()[0])
    assert diff <= 1e-4, r.stdout


def test_onnx_parity_on_real_crops(tmp_path):
    "Both graphs on crops of a rendered face, batch 2, against the PyTorch modules they were exported from."
    import onnxruntime as ort
    from ldeq.models.checkpoint import load_model
    from ldeq.video.export import FirstFrame, RwRStep, export_onnx
    from ldeq.core.preprocess import bbox_to_affine, crop_image, normalize_image
    from ldeq.faces.scene import Scene, render_scene
    model = load_model(DEMO)
    step, first = export_onnx(model, tmp_path / 'demo.onnx')
    crops = []
    for size in (110.0, 130.0):
        r = render_scene(Scene(face_size=size))
        box = np.r_[r.landmarks.min(0), r.landmarks.max(0)]
        crops.append(crop_image(r.image, bbox_to_affine(box, 1.2, model.cfg.image_size), model.cfg.image_size))
    x = normalize_image(np.stack(crops))
    with torch.no_grad():
        lm0, z0 = FirstFrame(model, 8)(x)
        lm1, z1 = RwRStep(model, 2)(x.flip(0), z0)
    o0 = ort.InferenceSession(str(first), providers=['CPUExecutionProvider']).run(None, {'crop': x.numpy()})
    o1 = ort.InferenceSession(str(step), providers=['CPUExecutionProvider']).run(None, {'crop': x.flip(0).numpy(), 'z_prev': z0.numpy()})
    for got, want in zip(o0 + o1, (lm0, z0, lm1, z1)):
        assert np.abs(got - want.numpy()).max() <= 1e-4


def test_onnx_tracker_imports_no_torch():
    code = 'import sys, ldeq.video.onnx_track, ldeq.video.detect, ldeq.data.videoio, ldeq.core.preprocess, ldeq.core.threads; assert "torch" not in sys.modules'
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
