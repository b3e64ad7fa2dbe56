"""Write `docs/architecture.md` from the code: the layer rule, then per layer its package docstring and a table of
modules (notebook, what each owns, what it imports). Run `python tools/architecture.py`; `tests/test_layers.py`
fails when the file is out of date."""
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_layers():
    "The shared checker, `tools/layers.py`, loaded from its file (no `sys.path` edits)."
    spec = importlib.util.spec_from_file_location('ldeq_tools_layers', HERE / 'layers.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    "Render the architecture page and write it, saying whether it changed."
    layers = load_layers()
    out, text = layers.ROOT / layers.DOC, layers.render_architecture()
    same = out.is_file() and out.read_text() == text
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    n, state = len(layers.modules()), 'unchanged' if same else 'written'
    print(f'{layers.DOC}: {state} ({n} modules, {len(layers.LAYERS)} layers)')


if __name__ == '__main__':
    main()
