"""The package's metadata (pyproject.toml) is coherent with the code, without installing anything."""
from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
from pathlib import Path

import torch

import mast

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]

#: Import names whose distribution is named otherwise.
DISTRIBUTIONS = {"cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml",
                 "sklearn": "scikit-learn", "skimage": "scikit-image"}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def test_the_distribution_is_not_the_unrelated_mast_of_the_package_index():
    assert PROJECT["name"] == "mast-video"
    assert PROJECT["scripts"] == {"mast": "mast.cli.main:main"}  # the command and the import name stay mast


def test_the_version_is_the_package_s_one_version():
    assert PROJECT["dynamic"] == ["version"]
    assert SETUPTOOLS["dynamic"]["version"] == {"attr": "mast._version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", mast.__version__)


def test_the_console_script_is_an_importable_function():
    module, function = PROJECT["scripts"]["mast"].split(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_licence_field_names_the_licence_file_s_licence():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_python_and_torch_minimums_hold_here_and_torch_has_no_upper_pin():
    assert PROJECT["requires-python"] == ">=3.10" and sys.version_info >= (3, 10)
    torch_requirement = next(r for r in PROJECT["dependencies"] if _requirement_name(r) == "torch")
    minimum = re.fullmatch(r"torch>=(\d+)\.(\d+)", torch_requirement)
    assert minimum, torch_requirement
    assert tuple(int(part) for part in torch.__version__.split(".")[:2]) >= tuple(map(int, minimum.groups()))
    # What the minimum rests on: the operators' registration API.
    assert hasattr(torch.library, "register_fake") and hasattr(torch.library, "register_autograd")


def test_every_third_party_module_the_package_imports_is_a_dependency():
    imported = set()
    for path in (ROOT / "mast").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "mast"}
    declared = {_requirement_name(requirement) for requirement in PROJECT["dependencies"]}
    assert {DISTRIBUTIONS.get(name, name).lower() for name in third_party} <= declared
    assert "tensorboard" in declared  # torch.utils.tensorboard needs it, and says so only when imported


def test_extras_and_package_data():
    extras = PROJECT["optional-dependencies"]
    assert "pytest" in extras["test"] and set(extras["test"]) <= set(extras["dev"])
    assert set(SETUPTOOLS["package-data"]["mast"]) == {"configs/*.yaml", "py.typed", "weights/*.pt"}
    assert (ROOT / "mast" / "py.typed").is_file() and list((ROOT / "mast" / "configs").glob("*.yaml"))
    assert list((ROOT / "mast" / "weights").glob("*.pt"))  # the shipped backbone (tests/test_shipped.py)
    assert (ROOT / PROJECT["readme"]).is_file()


def test_setup_py_builds_the_extension_only():
    """One place for the metadata: setup.py's setup() takes the extension and its build command, nothing else."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    calls = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"]
    assert len(calls) == 1 and {keyword.arg for keyword in calls[0].keywords} == {"ext_modules", "cmdclass"}
