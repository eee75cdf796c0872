"""The config schema: dataclasses loaded from YAML with type checks and dotted overrides,
one-line errors naming the key, and the run folders written before the schema existed."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from mast.common.config import ConfigError, FieldError, apply_overrides, complete, from_dict, require, to_dict
from mast.models.protocol import KNOB_NAMES
from mast.train.config import PhaseConfig, TrainingConfig, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

#: The defaults of the nested-dict config this schema replaced (mast/train/config.py before it).
OLD_DEFAULTS = {
    "model": {"colour_space": "lab", "output_stride": 4, "feature_dim": 64,
              "widths": [64, 128, 256, 256], "blocks": [2, 2, 2, 2]},
    "objective": {"name": "lab-huber", "upsample": True, "huber_scale": 20.0, "clusters": 16, "centroids": None,
                  "keep_all_prob": 0.3, "max_objects": 10},
    "engine": {"window": 13, "temperature": 1.0, "topk": None, "normalize": False, "near_range": 15},
    "memory": {"long_term": [0, 5], "short_term": [1, 3, 5]},
    "data": {"size": 256, "frame_stride": 1, "scale": [0.25, 1.0], "hflip": 0.5, "rotate90": False, "workers": 2},
    "train": {"seed": 0, "batch_size": 24, "clip_grad": 1.0, "amp": True, "log_every": 10, "image_every": 200,
              "checkpoint_every": 1000, "max_bad_steps": 10, "time_budget_minutes": None, "device": "auto"},
    "phases": [{"name": "pairs", "mode": "pairs", "steps": 1000, "lr": 1.0e-3, "lr_milestones": [0.4, 0.6, 0.8],
                "lr_gamma": 0.5, "pair_gaps": [2, 5, 8], "pair_gap_probs": [0.4, 0.4, 0.2]}],
}
#: Fields of BackboneConfig and EngineConfig that the old config did not restate, at their defaults.
def _knobs(**set_knobs) -> dict:
    """A ``PropagationKnobs`` section as YAML holds it: every knob, None where unset."""
    return {**dict.fromkeys(KNOB_NAMES), **set_knobs}


NEW_KEYS = {"model": {"in_channels": 3, "stem_pool": False, "padding_mode": "zeros", "stages": 4, "head": True},
            "engine": {"max_dilation": 4, "roi_localisation": True, "tile_elements": None},
            "propagation": _knobs(),
            "validation": {"every": 500, "max_frames": 40, "preset": "quick",
                           "candidates": [_knobs(normalize=False), _knobs(normalize=True, temperature=0.05, topk=16)],
                           "patience": None, "min_delta": 0.0, "at_start": False}}

#: A run folder's config.yaml as the old code wrote it (yaml.safe_dump of the nested dict).
OLD_RUN_CONFIG = """\
model:
  colour_space: rgb
  output_stride: 4
  feature_dim: 16
  widths:
  - 8
  - 8
  - 16
  - 16
  blocks:
  - 1
  - 1
  - 1
  - 1
objective:
  name: kmeans-ce
  upsample: true
  huber_scale: 20.0
  clusters: 16
  centroids: centroids.json
  keep_all_prob: 0.3
  max_objects: 10
engine:
  window: 5
  temperature: 1.0
  topk: null
  normalize: false
  near_range: 15
memory:
  long_term:
  - 0
  short_term:
  - 1
  - 2
data:
  size: 64
  frame_stride: 1
  scale:
  - 0.5
  - 1.0
  hflip: 0.5
  rotate90: false
  workers: 0
train:
  seed: 0
  batch_size: 4
  clip_grad: 1.0
  amp: true
  log_every: 10
  image_every: 200
  checkpoint_every: 1000
  max_bad_steps: 10
  time_budget_minutes: 35
  device: auto
phases:
- name: a
  mode: pairs
  steps: 6
  lr: 0.003
  lr_milestones:
  - 0.4
  - 0.6
  - 0.8
  lr_gamma: 0.5
  pair_gaps:
  - 2
  - 5
  - 8
  pair_gap_probs:
  - 0.4
  - 0.4
  - 0.2
- name: b
  mode: memory
  steps: 4
  lr: 2.0e-05
  lr_milestones: []
  lr_gamma: 0.5
  pair_gaps:
  - 2
  - 5
  - 8
  pair_gap_probs:
  - 0.4
  - 0.4
  - 0.2
"""


def _with_new_keys(old: dict) -> dict:
    merged = {section: {**values, **NEW_KEYS.get(section, {})} if isinstance(values, dict) else values
              for section, values in old.items()}
    return {**merged, **{section: keys for section, keys in NEW_KEYS.items() if section not in old}}


# -- the training schema ------------------------------------------------------------------------------------------


def test_the_defaults_are_the_old_defaults_plus_the_model_configs_own_fields():
    expected = _with_new_keys(OLD_DEFAULTS)
    assert to_dict(TrainingConfig()) == expected
    assert to_dict(load_config()) == expected
    assert list(to_dict(TrainingConfig())) == [*OLD_DEFAULTS, "propagation", "validation"]  # the sections, in the file's order


CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))


def test_the_packaged_configs_are_there():
    assert {path.name for path in CONFIG_FILES} >= {"mast.yaml", "corrflow.yaml", "finetune.yaml", "evidence.yaml"}


def config_schema(path: Path) -> type:
    """The schema of a packaged config: a baseline's own (``mast train-baseline NAME`` reads
    ``NAME.yaml``; ``NAME-<variant>.yaml`` is another recipe of it), else :class:`TrainingConfig`."""
    from mast.train import baselines

    name = path.stem.split("-")[0]
    return baselines.baseline(name).schema if name in baselines.names() else TrainingConfig


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.name)
def test_every_packaged_config_loads_holds_what_it_says_and_survives_save_and_load(path, tmp_path):
    schema = config_schema(path)
    config = load_config(path, schema=schema)
    loaded = to_dict(config)
    for section, values in yaml.safe_load(path.read_text()).items():
        if section == "phases":
            assert len(loaded["phases"]) == len(values)
            for phase, written in zip(loaded["phases"], values):
                assert {key: phase[key] for key in written} == written
        elif isinstance(values, dict):
            assert {key: loaded[section][key] for key in values} == values, section
        else:  # a top-level value (a baseline's loss: bce)
            assert loaded[section] == values, section
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml", schema=schema) == config


def test_a_run_folder_written_by_the_old_code_loads_and_saves_in_its_layout(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(OLD_RUN_CONFIG)
    config = load_config(run / "config.yaml")
    assert config.model.colour_space == "rgb" and config.model.widths == (8, 8, 16, 16)
    assert config.objective.centroids == "centroids.json" and config.engine.window == 5
    assert config.memory.short_term == (1, 2) and config.data.scale == (0.5, 1.0)
    assert config.train.time_budget_minutes == 35.0
    assert [phase.name for phase in config.phases] == ["a", "b"] and config.phases[1].lr_milestones == ()
    save_config(config, run / "again.yaml")
    again = yaml.safe_load((run / "again.yaml").read_text())
    old = yaml.safe_load(OLD_RUN_CONFIG)
    assert again == _with_new_keys(old) and list(again) == [*old, "propagation", "validation"]


def test_overrides_reach_list_items_take_null_and_numbers_with_exponents():
    config = load_config(CONFIGS / "mast.yaml", ["phases.1.lr=1e-4", "engine.topk=8", "engine.topk=null",
                                                 "objective.centroids=c.json", "memory.short_term=[1,2]",
                                                 "train.batch_size=8.0", "data.hflip=1"])
    assert config.phases[1].lr == 1e-4 and config.phases[0].lr == 1e-3
    assert config.engine.topk is None and config.objective.centroids == "c.json"
    assert config.memory.short_term == (1, 2)
    assert config.train.batch_size == 8 and isinstance(config.train.batch_size, int)
    assert config.data.hflip == 1.0 and isinstance(config.data.hflip, float)


def test_a_replaced_list_is_completed_from_the_defaults_before_the_next_override():
    config = load_config(overrides=["phases=[{name: a}, {name: b, mode: memory}]", "phases.1.lr_gamma=0.1"])
    assert config.phases == (PhaseConfig(name="a"), PhaseConfig(name="b", mode="memory", lr_gamma=0.1))


def test_a_file_may_be_completed_by_the_overrides_it_is_given_with(tmp_path):
    path = tmp_path / "gaps.yaml"
    path.write_text("phases:\n  - name: a\n    pair_gaps: [1, 4]\n")
    with pytest.raises(ConfigError, match="gaps.yaml: phases.0.pair_gap_probs"):
        load_config(path)
    assert load_config(path, ["phases.0.pair_gap_probs=[0.5,0.5]"]).phases[0].pair_gap_probs == (0.5, 0.5)


@pytest.mark.parametrize("override,message", [
    ("train.batch_size=abc", "train.batch_size must be an integer, got 'abc'"),
    ("train.batch_size=2.5", "train.batch_size must be an integer, got 2.5"),
    ("train.amp=1", "train.amp must be true or false, got 1"),
    ("data.scale=[0.5]", "data.scale must be a list of 2 numbers, got [0.5]"),
    ("model.widths=[8,x,8,8]", "model.widths must be a list of 4 integers, got [8, 'x', 8, 8]"),
    ("objective.centroids=3", "objective.centroids must be a string or null, got 3"),
    ("train.time_budget_minutes=.inf", "train.time_budget_minutes must be a number or null, got inf"),
    ("phases.0=3", "phases.0 must be a mapping, got 3"),
    ("phases={}", "phases must be a list of mappings, got {}"),
    ("phases=[]", "phases must be a non-empty list of phase mappings, got []"),
    ("phases.0.lr=[1]", "phases.0.lr must be a number, got [1]"),
    ("phases.0.name=", "phases.0.name must be a string, got None"),
    ("memory.short_term=[0]", "memory.short_term must be offsets >= 1 (frames back), got [0]"),
    ("model.in_channels=1", "model.in_channels must be 3 (colour frames), got 1"),
    ("engine.max_dilation=0", "engine.max_dilation must be >= 1, got 0"),
])
def test_type_and_value_errors_are_one_line_naming_the_key_and_the_value_as_written(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override])
    assert str(caught.value) == message


@pytest.mark.parametrize("override,message", [
    ("engine.windw=3", "unknown config key engine.windw (known at engine: max_dilation, near_range, normalize, "
                       "roi_localisation, temperature, tile_elements, topk, window)"),
    ("colour=lab", "unknown config key colour (known at the top level: data, engine, memory, model, objective, "
                   "phases, propagation, train, validation)"),
    ("phases.1.lr=1", "phases.1.lr: '1' is not an index of a list of 1"),
    ("engine.topk.k=1", "unknown config key engine.topk.k: engine.topk holds None, not a mapping"),
    ("train.batch_size", "an override is key=value, got 'train.batch_size'"),
])
def test_unknown_override_keys_are_named_with_the_keys_known_at_their_level(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override])
    assert str(caught.value) == message


def test_unknown_file_keys_name_the_file_and_the_key_at_any_depth(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("phases:\n  - name: a\n  - name: b\n    step: 4\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: unknown config key phases.1.step (known at phases.1: lr, lr_gamma")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="typo.yaml: config must be a mapping"):
        load_config(path)


def test_checkpoint_data_is_plain_and_rebuilds_the_config():
    config = load_config(CONFIGS / "mast.yaml", ["engine.topk=4"])
    data = to_dict(config)

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(map(plain, value))
        return value is None or isinstance(value, (bool, int, float, str))

    assert plain(data)
    assert from_dict(TrainingConfig, data) == config


# -- the generic loader -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    size: int = 1
    label: str | None = None

    def __post_init__(self) -> None:
        require(self.size >= 1, "size", "must be >= 1", self.size)


@dataclass(frozen=True)
class Outer:
    name: str
    item: Item = field(default_factory=Item)
    items: list[Item] = field(default_factory=list)
    pair: tuple[int, str] = (0, "a")
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.ratio > 1:
            raise ValueError("ratio above 1 makes no sense")


def test_from_dict_builds_nested_dataclasses_and_to_dict_undoes_it():
    built = from_dict(Outer, {"name": "x", "item": {"size": 3}, "items": [{}, {"label": "b"}], "pair": [2, "b"]})
    assert built == Outer("x", Item(3), [Item(), Item(label="b")], (2, "b"))
    assert to_dict(built) == {"name": "x", "item": {"size": 3, "label": None},
                              "items": [{"size": 1, "label": None}, {"size": 1, "label": "b"}],
                              "pair": [2, "b"], "ratio": 0.5}
    assert from_dict(Outer, to_dict(built)) == built


def test_loader_errors_carry_the_where_prefix_and_the_value_as_written():
    with pytest.raises(FieldError) as caught:
        from_dict(Outer, {"name": "x", "items": [{}, {"size": 0}]}, where="outer")
    assert str(caught.value) == "outer.items.1.size must be >= 1, got 0" and caught.value.key == "outer.items.1.size"
    with pytest.raises(ConfigError, match=r"^outer: ratio above 1 makes no sense$"):
        from_dict(Outer, {"name": "x", "ratio": 2}, where="outer")
    with pytest.raises(ConfigError, match=r"^pair must be a list of 2 items \(an integer, a string\), got \[1, 2\]$"):
        from_dict(Outer, {"name": "x", "pair": [1, 2]})
    with pytest.raises(ConfigError, match=r"^name is missing \(Outer has no default for it\)$"):
        from_dict(Outer, {})


def test_complete_fills_defaults_keeps_values_as_written_and_checks_no_rules():
    assert complete(Outer, {"name": "x", "item": {"size": 0}, "ratio": 2}) == {
        "name": "x", "item": {"size": 0, "label": None}, "items": [], "pair": [0, "a"], "ratio": 2}


def test_apply_overrides_on_an_instance_checks_once_every_override_is_in():
    outer = Outer("x")
    changed = apply_overrides(outer, ["item.size=0", "item.size=5", "items=[{size: 2}]", "items.0.label=z"])
    assert changed == Outer("x", Item(5), [Item(2, "z")]) and outer == Outer("x")
    with pytest.raises(FieldError, match="^item.size must be >= 1, got 0$"):
        apply_overrides(outer, ["item.size=0"])
    with pytest.raises(TypeError, match="schema"):
        apply_overrides({"name": "x"}, ["name=y"])
