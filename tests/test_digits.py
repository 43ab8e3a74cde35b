"""samplegrad.lab.data.load_digits_fallback: scikit-learn's 8 x 8 digits behind MNIST's
interface."""

from __future__ import annotations

import pytest
import torch

from samplegrad.lab.data import MNIST, Binarization, Digits, load_digits_fallback
from samplegrad.lab.data.digits import TEST_SIZE
from samplegrad.lab.models.gaussian import GaussianVAE


def test_splits_shapes_and_range():
    train, test = load_digits_fallback(split="train"), load_digits_fallback(split="test")
    assert (len(train), len(test), TEST_SIZE) == (1500, 297, 297)
    for data in (train, test):
        assert isinstance(data, MNIST) and isinstance(data, Digits)
        assert data.images.shape == (len(data), 64) and data.images.dtype == torch.float32
        assert data.labels.shape == (len(data),) and data.labels.dtype == torch.int64
        assert data.images.min() == 0 and data.images.max() == 1
        # 17 grey levels, 0..16, scaled to [0, 1]
        assert torch.equal(data.images * 16, (data.images * 16).round())
        assert set(data.labels.tolist()) == set(range(10))
    assert Digits.image_shape == (8, 8)
    assert repr(train) == (
        "Digits(split='train', n=1500, binarization='dynamic', device=cpu, dtype=torch.float32)"
    )


def test_validation_split_comes_from_the_training_images():
    full = load_digits_fallback(split="train")
    train = load_digits_fallback(split="train", validation_size=200)
    valid = load_digits_fallback(split="valid", validation_size=200)
    assert (len(train), len(valid)) == (1300, 200)
    assert torch.equal(torch.cat([train.images, valid.images]), full.images)
    assert torch.equal(torch.cat([train.labels, valid.labels]), full.labels)


def test_splits_are_deterministic_and_independent_copies():
    first = load_digits_fallback(split="test", dtype=torch.float64)
    first.images.zero_()
    second = load_digits_fallback(split="test", dtype=torch.float64)
    assert second.images.max() == 1  # the cached data were not changed through `first`
    assert torch.equal(
        second.images, load_digits_fallback(split="test", dtype=torch.float64).images
    )


def test_binarizations():
    grey = load_digits_fallback(split="test", binarize="none")
    threshold = load_digits_fallback(split="test", binarize="threshold")
    dynamic = load_digits_fallback(split="test", binarize=Binarization.DYNAMIC)

    (x, _), *_ = grey.batches(TEST_SIZE, shuffle=False)
    assert torch.equal(x, grey.images)
    (x, _), *_ = threshold.batches(TEST_SIZE, shuffle=False)
    assert torch.equal(x, (grey.images > 0.5).float())

    def epoch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        (x, y), *_ = dynamic.batches(TEST_SIZE, generator=torch.Generator().manual_seed(seed))
        return x, y

    x, y = epoch(0)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x, epoch(0)[0]) and torch.equal(y, epoch(0)[1])
    assert not torch.equal(x, epoch(1)[0])
    # Bernoulli(grey): pixels that are 0 stay 0, pixels that are 1 stay 1.
    order = torch.randperm(TEST_SIZE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, dynamic.labels[order])
    assert torch.all(x[dynamic.images[order] == 0] == 0)
    assert torch.all(x[dynamic.images[order] == 1] == 1)


def test_batches_train_the_gaussian_vae():
    train, test = load_digits_fallback(split="train"), load_digits_fallback(split="test")
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GaussianVAE(latent_dim=2, hidden=32, data_dim=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def test_elbo() -> float:
        return model.elbo(test.images, generator=torch.Generator().manual_seed(1)).mean().item()

    before = test_elbo()
    for _ in range(3):
        sizes = []
        for x, _ in train.batches(128, generator=generator):
            optimizer.zero_grad()
            model.loss(x, generator=generator).loss.backward()
            optimizer.step()
            sizes.append(len(x))
        assert sizes == [128] * 11 + [92]
    assert test_elbo() > before + 5  # nats per image


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "validation"}, "split must be one of"),
        ({"binarize": "bernoulli"}, "binarize must be one of"),
        ({"dtype": torch.int64}, "dtype must be a floating dtype"),
        ({"validation_size": 1.5}, "validation_size must be an int"),
        ({"split": "valid"}, r"validation_size must be in 1\.\.1499 for split='valid'"),
        ({"validation_size": 1500}, r"0\.\.1499 for split='train' \(1500 training images\)"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_digits_fallback(**kwargs)
