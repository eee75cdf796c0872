"""``mast train-baseline ranet``: RANet trained on videos with masks (docs/baselines.md §7.3).

* :mod:`.config` -- the run's config schema (:class:`~.config.RANetTrainingConfig`);
* :mod:`.data` -- training samples (template, current frame, perturbed previous mask);
* :mod:`.losses` -- binary cross-entropy and the soft IoU;
* :mod:`.task` -- the :class:`~mast.train.tasks.TrainingTask` (:class:`~.task.RANetTask`).

Registered in :mod:`mast.train.baselines`.
"""
