"""The one place the plots create a figure, importing matplotlib only when one is drawn.

matplotlib takes most of a second to import; every ``samplegrad`` command and every module of
the lab imports these plot modules, so their matplotlib imports live inside the functions that
plot (``tests/test_imports.py`` checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A ``width`` x ``height`` inch figure with constrained layout, drawn without pyplot:
    :class:`matplotlib.figure.Figure` saved through the Agg renderer, so plotting works on a
    headless machine and leaves ``matplotlib.pyplot`` and its backend alone."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")
