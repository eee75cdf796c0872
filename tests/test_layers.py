"""The packages of mast form layers: a module imports only from its own package or lower layers.

The order is stated in the README's layout table; this test is what keeps it true.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mast"

#: Lower numbers are lower layers; packages on one layer do not import each other.
LAYERS = {"common": 0, "ops": 1, "models": 2, "data": 2, "eval": 3, "train": 4, "cli": 5}
#: Importable from anywhere: the version string and the compiled extension.
FOUNDATION = {"_version", "_C"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``mast.*`` import in a file, those inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "mast":  # from mast import _C
                found += [(node.lineno, f"mast.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("mast.")]


def layer_violations(package: Path = PACKAGE) -> list[str]:
    violations = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if len(parts) < 2:
            continue  # mast/__init__.py, __main__.py, _version.py sit above every layer
        own = parts[0]
        for line, module in imported_modules(path):
            target = module.split(".")[1]
            if target in FOUNDATION or target == own:
                continue
            if target not in LAYERS or LAYERS[target] >= LAYERS[own]:
                violations.append(f"mast/{'/'.join(parts)}:{line} ({own}, layer {LAYERS[own]}) imports "
                                  f"{module} ({target}, layer {LAYERS.get(target, '?')})")
    return violations


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


def test_imports_go_down_the_layers_only():
    assert layer_violations() == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    fake = tmp_path / "mast"
    (fake / "common").mkdir(parents=True)
    (fake / "common" / "x.py").write_text("def f():\n    from mast.eval.davis import score_davis\n")
    assert layer_violations(fake) == ["mast/common/x.py:2 (common, layer 0) imports mast.eval.davis (eval, layer 3)"]
