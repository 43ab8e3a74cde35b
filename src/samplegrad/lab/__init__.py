"""Applications built on samplegrad's public API: the lab beside the library.

- :mod:`~samplegrad.lab.data`: MNIST (and the offline 8 x 8 digits) with named binarizations;
- :mod:`~samplegrad.lab.models`: VAEs with Gaussian, Bernoulli and categorical latents, Bayesian
  classifiers;
- :mod:`~samplegrad.lab.rl`: policy-gradient tasks (the MNIST bandit, CartPole);
- :mod:`~samplegrad.lab.training`: one training loop and its three tasks (VAE, BNN, policy);
- :mod:`~samplegrad.lab.compare`: estimators measured against exact gradients and variances;
- :mod:`~samplegrad.lab.report`: ``samplegrad demo`` and its HTML page;
- :mod:`~samplegrad.lab.plots`: every figure (matplotlib is imported inside the functions).

The lab imports only public core names and needs the ``lab`` extra
(``pip install 'samplegrad[lab]'``: matplotlib, tqdm, scikit-learn).
"""
