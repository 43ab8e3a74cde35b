"""Training: ``samplegrad train vae | bnn | policy``, three trainers run by one loop.

- :mod:`~samplegrad.lab.training.loop`: the loop (:func:`~samplegrad.lab.training.loop.train`)
  and the protocol a trainer implements (:class:`~samplegrad.lab.training.loop.Trainer`);
- :mod:`~samplegrad.lab.training.vae`, :mod:`~samplegrad.lab.training.bnn`,
  :mod:`~samplegrad.lab.training.policy`: the trainers, their configs and ``fit`` functions;
- :mod:`~samplegrad.lab.training.config`: config fields that carry their help and their rules,
  and the fields every run shares;
- :mod:`~samplegrad.lab.training.files`, :mod:`~samplegrad.lab.training.signals`,
  :mod:`~samplegrad.lab.training.seeds`, :mod:`~samplegrad.lab.training.data`,
  :mod:`~samplegrad.lab.training.distributed`: what the loop uses (metrics files and
  checkpoints; SIGINT/SIGTERM; random streams and ``--seeds``; the MNIST splits; ``torchrun``);
- :mod:`~samplegrad.lab.training.calibration`: the BNN's calibration metrics.
"""
