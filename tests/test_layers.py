"""The layer rule: every module of `ldeq` sits in a layer, imports nothing above its layer, the import graph has no
cycle, and `docs/architecture.md` is what `tools/architecture.py` generates. Source is parsed, never imported."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(path, name):
    "Load a module from a file without touching `sys.path`."
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


layers = _load(ROOT / 'tools' / 'layers.py', 'ldeq_tools_layers')
LAYERS = layers.LAYERS                  # the layer order, lowest first; its single home is tools/layers.py
module_imports, render_architecture = layers.module_imports, layers.render_architecture


def test_every_module_in_a_layer():
    if bad := layers.misplaced():
        pytest.fail('modules outside the layers, or layer packages incomplete:\n  ' + '\n  '.join(bad))


def test_no_upward_import():
    if bad := layers.upward_imports() + layers.unresolved_dynamic_imports():
        pytest.fail(f'imports that break the layer rule (a module imports only its own layer and those below: '
                    f'{" < ".join(LAYERS)}):\n  ' + '\n  '.join(bad))


def test_no_cycles():
    if cycle := layers.find_cycle(layers.import_graph()):
        pytest.fail('import cycle (lazy imports count): ' + ' -> '.join(cycle))


def test_architecture_doc_is_current():
    doc = ROOT / layers.DOC
    if not (doc.is_file() and doc.read_text() == render_architecture()):
        pytest.fail(f'{layers.DOC} is not what the code says: regenerate it with `{layers.REGENERATE}` and commit it')


# --- the checker itself can fail: a tiny fake package with one of each violation ---

def _write(root, files):
    "Write `{relative path: text}` under `root`."
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _fake(root, extra):
    "A package `fake` with every layer (docstring'd `__init__`) and the modules in `extra`."
    inits = {f'fake/{x}/__init__.py': f'"""The {x} layer."""\n' for x in LAYERS}
    _write(root, {'fake/__init__.py': '', **inits, **extra})


def test_checker_resolves_imports(tmp_path):
    _fake(tmp_path, {
        'fake/core/a.py': '"""A."""\nX = 1\n',
        'fake/core/b.py': '"""B."""\n',
        'fake/engine/e.py': '"""E."""\n',
        'fake/video/t.py': '"""T."""\n',
        'fake/video/m.py': (
            '"""M."""\nimport importlib\nimport fake.core.a\nfrom fake.core import b, a\nfrom ..engine import e\n'
            'from . import t\nfrom .t import thing\nfrom fake.core.a import X\n'
            "MODS = ('fake.data', 'numpy')\nONE = 'fake.faces'\n"
            'def f(name):\n    from fake.models import anything\n'
            '    for m in MODS: importlib.import_module(m)\n    importlib.import_module(ONE)\n'
            "    importlib.import_module('.training', package='fake')\n"
            '    importlib.import_module(name)  # layers: dynamic-ok\n'),
    })
    path = tmp_path / 'fake/video/m.py'
    got = module_imports(path, 'fake.video.m', tmp_path, 'fake')
    assert got == {'fake.core.a', 'fake.core.b', 'fake.engine.e', 'fake.video.t', 'fake.models', 'fake.data',
                   'fake.faces', 'fake.training'}
    lazy = {e.target for e in layers.scan(path, 'fake.video.m', tmp_path, 'fake').edges if e.lazy}
    assert lazy == {'fake.models', 'fake.data', 'fake.faces', 'fake.training'}
    for check in (layers.misplaced, layers.upward_imports, layers.unresolved_dynamic_imports):
        assert check(tmp_path, 'fake') == [], check.__name__
    assert layers.find_cycle(layers.import_graph(tmp_path, 'fake')) == []
    doc = render_architecture(tmp_path, 'fake')
    assert '| `video.m` | — | M. | `core.a`, `core.b`, `data` (lazy), `engine.e`, `faces` (lazy), ' \
           '`models` (lazy), `training` (lazy), `video.t` |' in doc


def test_checker_reports_violations(tmp_path):
    _fake(tmp_path, {
        'fake/core/a.py': '"""A."""\nimport fake.video.b\n',
        'fake/video/b.py': '"""B."""\n',
        'fake/core/x.py': '"""X."""\nfrom . import y\n',
        'fake/core/y.py': '"""Y."""\ndef f():\n    from .x import g\n',
        'fake/core/d.py': '"""D."""\nimport importlib\nimport fake\nNAME = "fake." + "b"\n'
                          'def f(v):\n    importlib.import_module(v)\n    importlib.import_module(NAME)\n',
        'fake/stray.py': '',
        'fake/paper/__init__.py': '',
    })
    assert layers.upward_imports(tmp_path, 'fake') == [
        'fake/core/a.py:2 -> fake.video.b (layer core imports layer video)',
        'fake/core/d.py:3 -> fake (layer core imports the top-level package, above all layers)']
    assert layers.unresolved_dynamic_imports(tmp_path, 'fake') == [
        f'fake/core/d.py:{n}: importlib.import_module of a name not known statically (mark it '
        f'`{layers.DYNAMIC_OK}` if user-supplied)' for n in (6, 7)]
    assert layers.find_cycle(layers.import_graph(tmp_path, 'fake')) == ['fake.core.x', 'fake.core.y', 'fake.core.x']
    assert layers.misplaced(tmp_path, 'fake') == [
        'fake/stray.py: not inside a layer folder (' + ', '.join(LAYERS) + ')', 'fake/paper/__init__.py: no docstring']
