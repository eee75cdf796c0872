"""``mast train-baseline detector``: the detection-based tracker [Dave] trained on videos with masks
(docs/baselines.md §7.4).

* :mod:`.config` -- the run's config schema (:class:`~.config.DetectorTrainingConfig`);
* :mod:`.data` -- training pairs (a template crop and a search crop of one object);
* :mod:`.losses` -- proposal, box-head and mask-head targets and losses;
* :mod:`.task` -- the :class:`~mast.train.tasks.TrainingTask` (:class:`~.task.DetectorTask`).

Registered in :mod:`mast.train.baselines`.
"""
