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


def flag_strings(package: Path = PACKAGE, docstrings: bool = False) -> list[str]:
    """String literals below ``mast/cli`` (docstrings too if ``docstrings``) that name a command-line
    flag: library code is called from Python too, so it names arguments (``mast.common.errors``)."""
    import re

    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text(), str(path))
        documented = [node for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        documented_ids = {id(node.body[0].value) for node in documented
                      if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and (docstrings or id(node) not in documented_ids)
                    and re.search(r"(^|[\s(`'\"])--[a-z]", node.value)):
                found.append(f"mast/{path.relative_to(package)}:{node.lineno}: {node.value!r}")
    return found


def test_no_library_message_names_a_command_line_flag():
    assert flag_strings() == []


def test_the_flag_check_sees_messages_but_not_docstrings(tmp_path):
    fake = tmp_path / "mast"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "x.py").write_text('"""Read by ``mast propagate --davis``."""\n'
                                        'def f(year):\n    raise ValueError(f"need --year 2016, got {year}")\n')
    assert flag_strings(fake) == ["mast/data/x.py:3: 'need --year 2016, got '"]


def test_no_library_docstring_names_a_command_line_flag_either(tmp_path):
    assert flag_strings(docstrings=True) == []
    fake = tmp_path / "mast"
    (fake / "eval").mkdir(parents=True)
    (fake / "eval" / "x.py").write_text('"""Read by ``mast evaluate --boxes``."""\n')
    assert flag_strings(fake, docstrings=True) == ["mast/eval/x.py:1: 'Read by ``mast evaluate --boxes``.'"]
