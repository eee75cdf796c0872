"""The one training loop: every task (:mod:`mast.train.tasks`), every phase, one or many processes.

Runs are step-indexed: clip ``j`` of step ``s`` on rank ``r`` is dataset
item ``(s * world + r) * batch + j`` of its phase, and every random choice of
a step (augmentation, channel dropout) is seeded by ``(seed, phase, step,
rank)``. Resuming from a checkpoint therefore continues exactly as an
uninterrupted run would, whatever happened in between.

Every start of a run (fresh or resumed) first removes the temporaries that
a killed run left in its folder (:func:`mast.common.files.remove_stale_temporaries`).
The folder is a recorded output folder (:mod:`mast.train.runs`): checked and
locked before anything is written, its record listing every file the run writes.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mast.common.config import to_dict
from mast.common.files import atomic_write_text, remove_stale_temporaries
from mast.data.clips import make_loader
from mast.train import checkpoint as ckpt
from mast.train import distributed
from mast.train.config import save_config
from mast.train.runs import RunFolder, check_run_folder, run_inputs, training_command
from mast.train.tasks import TrainingTask
from mast.train.validation import Score, Validator, write_learning_curve

logger = logging.getLogger(__name__)


class TrainingAborted(RuntimeError):
    """Too many non-finite losses in a row."""


@dataclass
class Progress:
    phase: int = 0
    step: int = 0  # within the phase
    global_step: int = 0
    skipped: int = 0  # non-finite steps skipped so far
    bad_in_a_row: int = 0
    skipped_clips: int = 0  # unreadable clips replaced so far, over all ranks
    best_score: float = -1.0  # the best validation J&F so far, and its step
    best_step: int = -1
    stale_validations: int = 0  # validations in a row since the last new best
    variant: str = ""  # how the task's model tracked best at the last validation
    budget_seconds_used: float = 0.0  # training time the time budget has counted (validation excluded)


class StepSampler(torch.utils.data.Sampler):
    """Dataset indices of steps ``start..end-1`` for one rank (see module docstring)."""

    def __init__(self, start: int, end: int, batch: int, rank: int, world: int) -> None:
        self.start, self.end, self.batch, self.rank, self.world = start, end, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.end):
            first = (step * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __len__(self) -> int:
        return (self.end - self.start) * self.batch


def step_generator(seed: int, phase: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + phase) * 1_000_003 + step) * 1_009 + rank)


class Trainer:
    """Trains a :class:`~mast.train.tasks.TrainingTask`: ``Trainer(task, out).run()``.

    Constructing one only stores its arguments; :meth:`prepare` (called by
    :meth:`run` when it was not called before) checks them and builds what a
    run needs.

    Args:
        task: what is learnt (its config, data, model and losses).
        out_dir: run folder: ``config.yaml``, ``run.json``, ``checkpoints/``,
            ``tensorboard/``, and at the end ``task.final_name``.
        resume: continue from ``out_dir/checkpoints/last.pt`` (or, when that is
            unreadable, the newest readable ``step-*.pt``).
        overwrite: replace the run in ``out_dir``: only the files its ``run.json`` lists go.
        command: the command the run belongs to, as its record names it (default:
            :func:`~mast.train.runs.training_command` of ``task``); ``resume`` continues
            only a run of the same command.
        command_line: this invocation's command line for the record (default ``sys.argv``).
        validator: scores the model every ``validator.every`` steps and at the end
            (:mod:`mast.train.validation`): TensorBoard ``val/*``, the progress bar,
            ``validation.json``, its learning curve ``validation.png``, and
            ``best-<final_name>`` for the best score. The time
            budget counts training only, not validation.
    """

    def __init__(self, task: TrainingTask, out_dir: str | Path, resume: bool = False,
                 validator: Validator | None = None, overwrite: bool = False, command: str | None = None,
                 command_line: list[str] | None = None) -> None:
        self.task, self.config, self.out_dir, self.resume = task, task.config, Path(out_dir), resume
        self.overwrite, self.command = overwrite, command or training_command(task)
        self.command_line = command_line
        self.run_folder: RunFolder | None = None  # the main process's
        self.resume_from: tuple[Path, dict[str, Any]] | None = None
        self.validator = validator
        self.validations: list[dict[str, Any]] = []
        self.last_score: float | None = None
        self.prepared = False
        self.progress = Progress()
        self.writer = None
        self.losses: list[float] = []

    # -- set-up ---------------------------------------------------------------

    def prepare(self) -> Trainer:
        """Joins the process group and lets the task check its data and build its model
        (then wraps it for DDP). Does nothing when called again.

        Everything that can be refused is checked before anything in ``out_dir``
        changes (the folder's rules, :mod:`mast.train.runs`, and the checkpoint to
        resume from): the record, removing a killed run's temporaries and the
        task's own outputs (kmeans-ce's centroids) come last. The main process
        holds the folder's lock from here to the end of :meth:`run`.

        Raises:
            ValueError / FileNotFoundError: one line each (unusable data, output
                folder, device or ``init`` checkpoint).
        """
        if self.prepared:
            return self
        check_run_folder(self.out_dir, self.task.inputs)
        self.world = distributed.setup(self.config.train.device)
        if self.world.is_main:
            self.run_folder = RunFolder(self.out_dir, self.command, self.resume, self.overwrite, self.task.final_name)
        try:
            self._prepare_locked()
        except BaseException:
            self.release()
            raise
        self.prepared = True
        return self

    def _prepare_locked(self) -> None:
        """:meth:`prepare` from the folder's checks on, which take its lock (main process)."""
        if self.run_folder is not None:
            self.run_folder.check()
        self.module = self.task.build(self.world)
        if self.resume:
            self.resume_from = ckpt.read_resume_checkpoint(self.out_dir)
        if self.world.is_main:
            self.run_folder.start(run_inputs(self.task), {"argv": self.command_line, "world_size": self.world.size,
                                                          "task": type(self.task).__name__, **self.task.describe()})
            for folder in (self.out_dir, self.out_dir / ckpt.CHECKPOINT_DIR):
                remove_stale_temporaries(folder)
        self.task.setup_outputs(self.out_dir, self.world)
        if self.world.is_main and (self.out_dir / "centroids.json").is_file():
            self.run_folder.record(self.out_dir / "centroids.json")  # kmeans-ce's, made or checked here
        self.model = self.module
        if self.world.size > 1:
            device_ids = [self.world.device.index] if self.world.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.module, device_ids=device_ids)

    def release(self) -> None:
        """Gives back the run folder's lock (:meth:`run` does at its end)."""
        if self.run_folder is not None:
            self.run_folder.release()

    def _phase_loader(self, phase_index: int, start: int):
        phase, train = self.config.phases[phase_index], self.config.train
        dataset = self.task.dataset(phase_index, phase.steps * train.batch_size * self.world.size)
        sampler = StepSampler(start, phase.steps, train.batch_size, self.world.rank, self.world.size)
        return make_loader(dataset, batch_size=train.batch_size, num_workers=self.config.data.workers,
                           sampler=sampler, pin_memory=self.world.device.type == "cuda", collate=self.task.collate)

    def _optimiser(self, phase_index: int):
        phase = self.config.phases[phase_index]
        optimiser = torch.optim.Adam(self.model.parameters(), lr=phase.lr)
        milestones = sorted({max(1, int(f * phase.steps)) for f in phase.lr_milestones})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones, gamma=phase.lr_gamma)
        return optimiser, scheduler

    # -- the loop -------------------------------------------------------------

    def run(self, stop_after: int | None = None) -> dict[str, Any]:
        """Trains every phase to its end (or for ``stop_after`` global steps, then
        checkpoints, e.g. to split a run across time slots); returns a summary."""
        self.prepare()
        try:
            return self._run(stop_after)
        finally:
            self.release()

    def _run(self, stop_after: int | None) -> dict[str, Any]:
        self.stop_after = stop_after
        restored = self._restore() if self.resume else None
        budget = self.config.train.time_budget_minutes
        # A resumed run has only what its earlier parts left of the budget.
        self.deadline = None if budget is None else time.monotonic() + 60 * budget - self.progress.budget_seconds_used
        if self.world.is_main:
            save_config(self.config, self.out_dir / "config.yaml")
            self.run_folder.record(self.out_dir / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter

            before = self.run_folder.files_under("tensorboard")
            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            self.run_folder.record(*self.run_folder.files_under("tensorboard") - before)  # its new event file
        try:
            if self.validator is not None and self.validator.at_start and self.progress.global_step == 0:
                self._validate()  # step 0: the curve starts from the init (a resumed run has this point)
            for phase_index in range(self.progress.phase, len(self.config.phases)):
                finished = self._run_phase(phase_index, restored)
                restored = None
                if not finished:
                    break
                self.progress.phase, self.progress.step = phase_index + 1, 0
            distributed.share_buffers(self.module, self.world)
            if self.world.is_main:
                self.task.save_final(self.out_dir / self.task.final_name, self.progress.variant or None)
                self.run_folder.record(self.out_dir / self.task.final_name)
        finally:
            if self.writer is not None:
                self.writer.close()
        return {"steps": self.progress.global_step, "skipped": self.progress.skipped,
                "skipped_clips": self.progress.skipped_clips, "losses": self.losses}

    def _run_phase(self, phase_index: int, restored: dict[str, Any] | None) -> bool:
        """Runs one phase from ``self.progress.step``; False when ``stop_after`` cut it short."""
        phase = self.config.phases[phase_index]
        optimiser, scheduler = self._optimiser(phase_index)
        scaler = torch.amp.GradScaler("cuda", enabled=self._amp())
        if restored is not None:
            optimiser.load_state_dict(restored["optimizer"])
            scheduler.load_state_dict(restored["scheduler"])
            scaler.load_state_dict(restored["scaler"])
        start = self.progress.step
        loader = self._phase_loader(phase_index, start)
        bar = self._progress_bar(phase, start)
        try:
            self._train_steps(loader, bar, phase_index, optimiser, scheduler, scaler)
        finally:
            bar.close()  # on an error too, so that its message starts on a line of its own
        return self.progress.step >= phase.steps

    def _progress_bar(self, phase, start: int) -> tqdm:
        """The phase's bar: over the time budget's seconds when one is set (the step total is then
        only a bound, so its ETA would mislead), else over the phase's steps."""
        desc, quiet = f"{phase.name} ({phase.mode})", not self.world.is_main
        if self.deadline is None:
            return tqdm(total=phase.steps, initial=start, desc=desc, unit="step", disable=quiet, dynamic_ncols=True)
        budget = 60 * self.config.train.time_budget_minutes
        return tqdm(total=budget, initial=self._budget_used(), desc=desc, unit="s", disable=quiet,
                    dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]")

    def _budget_used(self) -> float:
        """Seconds of the time budget spent so far (validation excluded: it moves the deadline)."""
        budget = 60 * self.config.train.time_budget_minutes
        return min(max(budget - (self.deadline - time.monotonic()), 0.0), budget)

    def _advance_bar(self, bar: tqdm) -> None:
        """One step on the bar: a step, or the budget's seconds spent since the last update."""
        bar.update(1 if self.deadline is None else self._budget_used() - bar.n)

    def _train_steps(self, loader, bar, phase_index, optimiser, scheduler, scaler) -> None:
        """The steps of ``loader``, each logged and checkpointed as the config asks."""
        phase, train = self.config.phases[phase_index], self.config.train
        if self._out_of_budget():  # resumed after its budget or stop_after was spent
            return
        clips_per_step = train.batch_size * self.world.size
        tick = time.perf_counter()
        for batch in loader:
            loss = self._step(batch, phase_index, optimiser, scheduler, scaler)
            self.progress.step += 1
            self.progress.global_step += 1
            self.progress.skipped_clips += distributed.total(batch["skipped_clips"], self.world)
            now = time.perf_counter()
            rate, tick = clips_per_step / max(now - tick, 1e-9), now
            self._advance_bar(bar)
            postfix = dict(loss=f"{loss:.4f}", clips_s=f"{rate:.1f}", skipped=self.progress.skipped,
                           skipped_clips=self.progress.skipped_clips)
            if self.deadline is not None:  # a bar over seconds: the steps go beside it
                postfix["step"] = self.progress.step
            if self.last_score is not None:
                postfix["val_jf"] = f"{self.last_score:.3f}"
            bar.set_postfix(**postfix)
            self._log(loss, optimiser, rate)
            stopping = self._out_of_budget()
            last_step = phase_index == len(self.config.phases) - 1 and self.progress.step == phase.steps
            if self.validator is not None and (stopping or last_step
                                               or self.progress.global_step % self.validator.every == 0):
                stopping = self._validate() or stopping
                tick = time.perf_counter()  # the clips/s of the next step leave validation out
            if stopping or self.progress.step % train.checkpoint_every == 0 or self.progress.step == phase.steps:
                self._checkpoint(optimiser, scheduler, scaler)
            if stopping:
                return

    def _out_of_budget(self) -> bool:
        """True when ``stop_after`` steps or the time budget are used up (all ranks agree)."""
        done = self.stop_after is not None and self.progress.global_step >= self.stop_after
        if self.deadline is not None:
            done = done or time.monotonic() >= self.deadline
            flag = torch.tensor([float(done)], device=self.world.device)
            if self.world.size > 1:
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            done = bool(flag.item())
        return done

    def _validate(self) -> bool:
        """Scores every way the task tracks with its model; keeps the best model file
        (main process); the time it took is added to the budget on every process.
        True when the validator's patience ran out (every process agrees)."""
        started = time.monotonic()
        if self.world.is_main:
            scores = {name: self.validator.score(tracker) for name, tracker in self.task.validation_trackers().items()}
            self._record_validation(scores)
        patience = self.validator.patience
        plateaued = patience is not None and self.progress.stale_validations >= patience
        shared = torch.tensor([time.monotonic() - started, float(plateaued)], dtype=torch.float64,
                              device=self.world.device)
        if self.world.size > 1:
            torch.distributed.broadcast(shared, src=0)
        if self.deadline is not None:
            self.deadline += float(shared[0].item())
        if shared[1].item() and self.world.is_main:
            logger.info("validation J&F has not improved by more than %g for %d validations: stopping early "
                        "(best %.3f at step %d)", self.validator.min_delta, patience, self.progress.best_score,
                        self.progress.best_step)
        return bool(shared[1].item())

    def _record_validation(self, scores: dict[str, Score]) -> None:
        step = self.progress.global_step
        best = max(scores, key=lambda name: scores[name].JF)
        self.progress.variant, self.last_score = best, scores[best].JF
        self.validations.append({"step": step, "best": best, **{name: s.as_dict() for name, s in scores.items()}})
        # validating from step 0 also draws the bar: what the first mask on every frame scores
        zero_motion = self.validator.zero_motion() if self.validator.at_start else None
        if self.writer is not None:
            for key, value in scores[best].as_dict().items():
                self.writer.add_scalar(f"val/{key}", value, step)
            if zero_motion is not None:
                self.writer.add_scalar("val/zero_motion", zero_motion, step)
            for name, score in scores.items():
                self.writer.add_scalar(f"val/{name}/J&F", score.JF, step)
        if scores[best].JF > self.progress.best_score + self.validator.min_delta:
            self.progress.best_score, self.progress.best_step = scores[best].JF, step
            self.progress.stale_validations = 0
            self.task.save_final(self.out_dir / f"best-{self.task.final_name}", best)
            self.run_folder.record(self.out_dir / f"best-{self.task.final_name}")
        else:
            self.progress.stale_validations += 1
        atomic_write_text(self.out_dir / "validation.json", json.dumps(
            {"sequences": self.validator.names, "best_step": self.progress.best_step,
             "best_score": self.progress.best_score, "zero_motion": zero_motion, "history": self.validations},
            indent=2))
        write_learning_curve(self.out_dir / "validation.png", self.validations, self.progress.best_step,
                             self.progress.best_score, self.validator.names, zero_motion)
        self.run_folder.record(self.out_dir / "validation.json", self.out_dir / "validation.png")
        logger.info("step %d: validation J&F %.3f (J %.3f, F %.3f) with %s; best %.3f at step %d", step,
                    scores[best].JF, scores[best].J, scores[best].F, best, self.progress.best_score,
                    self.progress.best_step)

    def _amp(self) -> bool:
        return self.config.train.amp and self.world.device.type == "cuda"

    def _step(self, batch, phase_index, optimiser, scheduler, scaler) -> float:
        train = self.config.train
        generator = step_generator(train.seed, phase_index, self.progress.step, self.world.rank)
        on_device = {key: value.to(self.world.device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                     for key, value in batch.items()}
        self.model.train()
        with torch.autocast(self.world.device.type, dtype=torch.float16, enabled=self._amp()):
            losses = self.task.losses(self.model, on_device, generator)
        loss = losses["loss"]
        self.components = {name: value.item() for name, value in losses.items() if name != "loss"}
        optimiser.zero_grad(set_to_none=True)
        if not distributed.all_finite(loss, self.world):
            return self._skip(loss)
        scaler.scale(loss).backward()
        scaler.unscale_(optimiser)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.clip_grad)
        if not self._amp() and not distributed.all_finite(norm, self.world):
            optimiser.zero_grad(set_to_none=True)
            return self._skip(norm)
        scaler.step(optimiser)  # with AMP, steps with inf/NaN gradients are skipped by the scaler
        scaler.update()
        scheduler.step()
        self.progress.bad_in_a_row = 0
        self.losses.append(loss.item())
        return self.losses[-1]

    def _skip(self, value: torch.Tensor) -> float:
        self.progress.skipped += 1
        self.progress.bad_in_a_row += 1
        limit = self.config.train.max_bad_steps
        if self.progress.bad_in_a_row >= limit:
            last = self.out_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST
            where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            raise TrainingAborted(
                f"{limit} non-finite losses/gradients in a row at step {self.progress.global_step} "
                f"(phase {self.progress.phase}); {where}. Lower the learning rate or check the data."
            )
        return float("nan")

    # -- logging and checkpoints -------------------------------------------------

    def _log(self, loss: float, optimiser, rate: float) -> None:
        if self.writer is None:
            return
        step, train = self.progress.global_step, self.config.train
        if step % train.log_every == 0 or step == 1:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", optimiser.param_groups[0]["lr"], step)
            self.writer.add_scalar("train/clips_per_second", rate, step)
            self.writer.add_scalar("train/skipped_steps", self.progress.skipped, step)
            self.writer.add_scalar("train/skipped_clips", self.progress.skipped_clips, step)
            for name, value in self.components.items():
                self.writer.add_scalar(f"train/{name}", value, step)
        if step % train.image_every == 0 or step == 1:
            picture = self.task.picture()
            if picture is not None:
                self.writer.add_image(f"train/{picture[0]}", picture[1], step)

    def _checkpoint(self, optimiser, scheduler, scaler) -> None:
        if not self.world.is_main:
            return
        if self.deadline is not None:
            left = max(self.deadline - time.monotonic(), 0.0)
            self.progress.budget_seconds_used = 60 * self.config.train.time_budget_minutes - left
        payload = {
            **self.task.checkpoint_state(),
            "optimizer": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "state": self.progress.__dict__.copy(),
            "config": to_dict(self.config),  # plain data: weights_only loads it, from_dict rebuilds it
            "rng": ckpt.rng_state(),
            "losses": self.losses,
            "validations": self.validations,
        }
        path = ckpt.write_training_checkpoint(self.out_dir, self.progress.global_step, payload)
        self.run_folder.record(path, path.with_name(ckpt.LAST))

    def _restore(self) -> dict[str, Any] | None:
        path, payload = self.resume_from
        self.task.restore(path, payload)
        try:
            self.progress = Progress(**payload["state"])
        except TypeError as error:
            raise ValueError(f"{path} holds no mast training progress: {error}") from error
        self.losses = list(payload.get("losses", []))
        self.validations = list(payload.get("validations", []))
        ckpt.set_rng_state(payload["rng"])
        if self.world.is_main:
            logger.info("resuming from %s (phase %d, step %d)", path, self.progress.phase, self.progress.step)
        if self.progress.phase >= len(self.config.phases):
            return None
        if self.progress.step >= self.config.phases[self.progress.phase].steps:
            # Saved at a phase's end: the next phase starts fresh.
            self.progress.phase, self.progress.step = self.progress.phase + 1, 0
            return None
        return payload

