"""The supervised baselines of ``mast train-baseline``: one registry, name -> config schema and task class.

A baseline is a model package ``mast/models/<name>/`` (``model``, ``tracker``), a
training package ``mast/train/<name>/`` (``config``, ``data``, ``losses``, ``task``),
its packaged ``configs/<name>.yaml``, and one entry here: a loader, registered
under its name, that imports its config schema and task class and returns them.
Loaders run when a baseline is used, so that listing the names (the parser of
``mast``) imports no torch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mast.common.errors import ArgumentError

if TYPE_CHECKING:
    from mast.train.tasks import BaselineTaskFactory

#: What a loader returns: the config schema (a dataclass) and the task class.
Loader = Callable[[], "tuple[type, BaselineTaskFactory]"]


@dataclass(frozen=True)
class Baseline:
    """A registered baseline.

    Attributes:
        name: ``mast train-baseline NAME``.
        schema: its config dataclass (``config.yaml``; :func:`mast.train.config.load_config`'s ``schema``).
        task: its task class, called as :class:`~mast.train.tasks.BaselineTaskFactory` says.
    """

    name: str
    schema: type
    task: BaselineTaskFactory

    @property
    def config_file(self) -> str:
        """Its packaged config, a file name under ``configs/``."""
        return f"{self.name}.yaml"


#: name -> loader, in registration order.
LOADERS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    """Decorator: registers the loader of baseline ``name`` (a name is registered once)."""

    def add(loader: Loader) -> Loader:
        if name in LOADERS:
            raise ValueError(f"a baseline named {name!r} is already registered")
        LOADERS[name] = loader
        return loader

    return add


def names() -> tuple[str, ...]:
    """The registered baselines' names, in registration order (imports nothing)."""
    return tuple(LOADERS)


def baseline(name: str) -> Baseline:
    """The registered baseline ``name`` (imports its modules); another name is an ArgumentError."""
    if name not in LOADERS:
        raise ArgumentError("baseline", f"unknown baseline {name!r}; registered: {', '.join(LOADERS)}")
    schema, task = LOADERS[name]()
    return Baseline(name, schema, task)


@register("siammask")
def _siammask() -> tuple[type, BaselineTaskFactory]:
    from mast.train.siammask.config import SiamMaskTrainingConfig
    from mast.train.siammask.task import SiamMaskTask

    return SiamMaskTrainingConfig, SiamMaskTask


@register("ranet")
def _ranet() -> tuple[type, BaselineTaskFactory]:
    from mast.train.ranet.config import RANetTrainingConfig
    from mast.train.ranet.task import RANetTask

    return RANetTrainingConfig, RANetTask


@register("detector")
def _detector() -> tuple[type, BaselineTaskFactory]:
    from mast.train.detector.config import DetectorTrainingConfig
    from mast.train.detector.task import DetectorTask

    return DetectorTrainingConfig, DetectorTask
