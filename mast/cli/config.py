"""``mast config``: the packaged training configs, listed or shown.

The training commands take any of them by name (``--config corrflow.yaml``
or ``--config corrflow``) when no file of that name is in the working
directory; copy one (``mast config show corrflow > mine.yaml``) to edit it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: configs/ of the repository, also shipped inside the package (mast/configs links to it).
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def register(subparsers) -> None:
    parser = subparsers.add_parser("config", help="list or show the packaged training configs",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the packaged configs, each with its first comment line").set_defaults(func=run_list)
    show = actions.add_parser("show", help="print one packaged config")
    show.add_argument("name", help="a packaged config's name, with or without .yaml")
    show.set_defaults(func=run_show)


def packaged_names() -> list[str]:
    """The packaged configs' names, without ``.yaml``, sorted."""
    return sorted(path.stem for path in PACKAGED_CONFIGS.glob("*.yaml"))


def packaged_config(name: str) -> Path | None:
    """The packaged config called ``name`` (with or without ``.yaml``); None when there is none."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    return PACKAGED_CONFIGS / f"{stem}.yaml" if stem in packaged_names() else None


def unknown_name(name: str) -> str:
    """One line saying there is no packaged config ``name``, listing those there are."""
    return f"no packaged config named {name}; known: {', '.join(packaged_names())}"


def resolve(path: Path) -> Path:
    """``--config PATH``: the file when it exists; else, for a bare name, the packaged config
    of that name (``corrflow.yaml`` or ``corrflow``).

    Raises:
        FileNotFoundError: a bare name that is neither (the message lists the packaged ones).
    """
    if path.exists() or path.name != str(path):
        return path  # a missing path with folders in it is load_config's to report
    packaged = packaged_config(path.name)
    if packaged is None:
        raise FileNotFoundError(f"--config {path}: no such file here, and {unknown_name(path.name)}")
    return packaged


def first_comment(path: Path) -> str:
    """The text of the file's first comment line, or '' when it has none."""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            return line.lstrip().lstrip("#").strip()
    return ""


def run_list(args: argparse.Namespace) -> int:
    names = packaged_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {first_comment(PACKAGED_CONFIGS / f'{name}.yaml')}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    path = packaged_config(args.name)
    if path is None:
        print(f"mast config: error: {unknown_name(args.name)}", file=sys.stderr)
        return 2
    sys.stdout.write(path.read_text())
    return 0
