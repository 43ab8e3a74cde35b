"""Images for the examples: MNIST where it can be found, else scikit-learn's 8 x 8 digits.

MNIST is looked for in ``--data-dir``, then ``$SAMPLEGRAD_DATA``, then the per-user cache
(``samplegrad.lab.data.find_mnist``; a full run may download it there, a ``--smoke`` run never
does). Without it the examples run on the 1797 bundled 8 x 8 digits and say so: their numbers
are then not MNIST numbers.
"""

from __future__ import annotations

from samplegrad.lab.data import MNIST, MNISTNotFoundError, load_digits_fallback, load_mnist


def load_images(
    data_dir: str | None, *, smoke: bool, binarize: str = "dynamic"
) -> tuple[MNIST, MNIST]:
    """The training (all 60 000 images) and test splits of MNIST, or of the digits."""
    try:
        return tuple(
            load_mnist(
                data_dir, split=split, validation_size=0, binarize=binarize, download=not smoke
            )
            for split in ("train", "test")
        )
    except MNISTNotFoundError as error:
        print(
            f"{str(error).splitlines()[0]} Using scikit-learn's 8 x 8 digits instead (not MNIST)."
        )
        return tuple(
            load_digits_fallback(split=split, binarize=binarize) for split in ("train", "test")
        )
