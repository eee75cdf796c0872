"""``mast train-baseline siammask``: SiamMask trained on videos with masks (docs/baselines.md §7.2).

* :mod:`.config` -- the run's config schema (:class:`~.config.SiamMaskTrainingConfig`);
* :mod:`.data` -- training pairs (jittered exemplar and search crops);
* :mod:`.losses` -- anchor / RoW targets and the three- and two-branch losses;
* :mod:`.task` -- the :class:`~mast.train.tasks.TrainingTask` (:class:`~.task.SiamMaskTask`).

Registered in :mod:`mast.train.baselines`.
"""
