"""The bottom layer of mast: file handling and device choice every other package shares.

Nothing here imports any other part of mast, so every layer may import it.

* :mod:`mast.common.files` -- atomic writes (temporary sibling + rename), the
  one naming rule for temporary files and folders, and the clean-up of
  temporaries left behind by a killed process.
* :mod:`mast.common.devices` -- ``--device`` / ``train.device`` names to a
  ``torch.device``, with a one-line error where the device does not exist.
"""
