"""``samplegrad compare``: estimators measured on problems with exact gradients and variances.

:mod:`~samplegrad.lab.compare.runner` measures and writes; :mod:`~.problems` holds the problems;
:mod:`~.exact_gaussian` and :mod:`~.exact_bernoulli` compute the exact values (quadrature and
enumeration); :mod:`~.bnn_variance` measures Bayesian layers' gradient variance.
"""
