"""One rule for every trainer: a sample that reads a damaged file is replaced, counted and named once."""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from mast.cli.main import main
from mast.common.masks import write_palette_png
from mast.data.samples import DamagedFile, Redraw, SampleDrawer
from mast.data.synthetic import translating_video
from mast.train.config import load_config
from mast.train.loop import Trainer
from mast.train.ranet.config import RANetTrainingConfig
from mast.train.ranet.task import RANetTask
from mast.train.siammask.config import SiamMaskTrainingConfig
from mast.train.siammask.task import SiamMaskTask

import test_ranet  # noqa: E402  (tests/ is on sys.path under pytest)
import test_siammask  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES, SIZE, BATCH, STEPS = 4, 64, 2, 6
STOP = 2  # the step of the checkpoint a run resumes from
TASKS = {
    "siammask": (SiamMaskTask, SiamMaskTrainingConfig, [*test_siammask.TINY, f"train.batch_size={BATCH}"]),
    "ranet": (RANetTask, RANetTrainingConfig, [*test_ranet.TINY, f"train.batch_size={BATCH}"]),
}


def write_video(root: Path, name: str, seed: int) -> None:
    frames, masks = translating_video(num_frames=FRAMES, height=SIZE, width=SIZE, seed=seed)
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        folder = root / "JPEGImages" / "480p" / name
        folder.mkdir(parents=True, exist_ok=True)
        image = (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), image)
        write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask.numpy().astype(np.uint8))


def truncate(path: Path) -> Path:
    """``path`` cut to half its bytes (a JPEG without its end-of-image marker)."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two videos, one truncated JPEG in the first and one mask of the wrong size in the second:
    ``(root, the JPEG, the mask)``."""
    root = tmp_path_factory.mktemp("damaged")
    write_video(root, "a", 0)
    write_video(root, "b", 1)
    jpeg = truncate(root / "JPEGImages" / "480p" / "a" / "00002.jpg")
    mask = root / "Annotations" / "480p" / "b" / "00001.png"
    write_palette_png(mask, np.ones((SIZE // 2, SIZE // 2), np.uint8))
    return root, jpeg, mask


def make_task(name: str, root: Path, *overrides: str):
    task_class, schema, tiny = TASKS[name]
    config = load_config(overrides=[*tiny, f"phases=[{{name: a, steps: {STEPS}, lr: 0.001, lr_milestones: []}}]",
                                    *overrides], schema=schema)
    return task_class(config, root)


def skips_per_step(task) -> list[int]:
    """The replaced samples of each step of phase 0 (the loop's items ``step * BATCH + j``)."""
    task.build(test_siammask._World())
    dataset = task.dataset(0, STEPS * BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [sum(dataset[step * BATCH + j]["skipped_clips"] for j in range(BATCH)) for step in range(STEPS)]


@pytest.mark.parametrize("name", TASKS)
def test_training_replaces_damaged_samples_and_resume_passes_them(name, damaged, tmp_path):
    root, jpeg, mask = damaged
    skips = skips_per_step(make_task(name, root))
    assert sum(skips[STOP:]) >= 1  # damaged samples after the checkpoint the run resumes from
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whole = Trainer(make_task(name, root), tmp_path / "whole").run()
    named = [str(w.message) for w in caught if "skipping training samples" in str(w.message)]
    assert len(named) == 2 and all(any(str(path) in message for message in named) for path in (jpeg, mask))
    assert whole["steps"] == STEPS and whole["skipped_clips"] == sum(skips)
    Trainer(make_task(name, root), tmp_path / "split").run(stop_after=STOP)
    resumed = Trainer(make_task(name, root), tmp_path / "split", resume=True).run()
    assert resumed["skipped_clips"] == whole["skipped_clips"]
    np.testing.assert_allclose(resumed["losses"], whole["losses"], rtol=1e-5, atol=1e-6)


def test_the_command_counts_the_replaced_samples(damaged, tmp_path, capsys):
    root, _, _ = damaged
    sets = [item for override in TASKS["siammask"][2] for item in ("--set", override)]
    phases = f"phases=[{{name: a, steps: {STEPS}, lr: 0.001, lr_milestones: []}}]"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        code = main(["train-baseline", "siammask", "--data", str(root), "--out", str(tmp_path / "run"), *sets,
                     "--set", phases])
    assert code == 0
    config = load_config(tmp_path / "run" / "config.yaml", schema=SiamMaskTrainingConfig)  # the packaged recipe's
    replaced = sum(skips_per_step(SiamMaskTask(config, root)))
    assert replaced >= 1
    assert f"done: {STEPS} steps (0 skipped, {replaced} unreadable clips replaced)" in capsys.readouterr().out


@pytest.mark.parametrize("name", TASKS)
def test_data_where_nothing_reads_fails_in_one_line(name, tmp_path, capsys):
    """Every frame but the first (which discovery checks) cut short: no sample can be drawn."""
    root = tmp_path / "data"
    write_video(root, "a", 0)
    for path in sorted((root / "JPEGImages" / "480p" / "a").glob("*.jpg"))[1:]:
        truncate(path)
    sets = [item for override in TASKS[name][2] for item in ("--set", override)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        code = main(["train-baseline", name, "--data", str(root), "--out", str(tmp_path / "run"), *sets])
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the log and the progress bar
    assert code == 2 and error.startswith("mast train-baseline: error: ") and "draws of training sample" in error
    assert "truncated JPEG" in error and str(root) in error


def test_the_drawer_counts_damage_not_redraws_and_warns_once_per_file(tmp_path):
    drawer = SampleDrawer(max_draws=5, hint="check the data")
    bad = tmp_path / "bad.jpg"

    def draw(attempt: int) -> str:
        if attempt < 2:
            raise DamagedFile(bad, "truncated JPEG")
        if attempt == 2:
            raise Redraw("no object in the crop")
        return f"item {attempt}"

    with pytest.warns(RuntimeWarning, match="bad.jpg: truncated JPEG") as caught:
        assert drawer.draw(7, draw) == ("item 3", 2)
        assert drawer.draw(8, draw) == ("item 3", 2)
    assert len(caught) == 1

    def never(attempt: int) -> str:
        raise Redraw(f"nothing in draw {attempt}")

    with pytest.raises(ValueError, match=r"^5 draws of training sample 3 in a row failed \(the last: nothing in "
                                         r"draw 4\); check the data$"):
        drawer.draw(3, never)
    assert str(DamagedFile(bad, f"corrupt frame {bad}: cut short")) == f"corrupt frame {bad}: cut short"
