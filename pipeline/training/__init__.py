"""Training the pose models on rendered people: data, augmentation, trainer, metrics, checkpoints.

``posecap train CONFIG`` (:mod:`pipeline.training.cli`) runs :class:`~pipeline.training.trainer.Trainer`
on a config parsed by :func:`~pipeline.training.config.load_train_config`. See docs/training.md.
"""
