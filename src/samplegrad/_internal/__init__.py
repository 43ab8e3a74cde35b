"""The core's private helpers: sampling with a generator, argument checks, families.

Nothing here is public: the applications in :mod:`samplegrad.lab` and users import the names
that :mod:`samplegrad`, :mod:`samplegrad.estimators`, :mod:`samplegrad.nn` and
:mod:`samplegrad.generators` export.
"""
