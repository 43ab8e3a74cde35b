"""``samplegrad demo``: the measurements (:mod:`~.demo`) and their HTML page (:mod:`~.html`)."""
