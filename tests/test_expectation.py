"""The ``sg.expectation`` contract: names, 'auto', shapes, generators, dtypes and errors."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Gamma,
    Independent,
    Normal,
    OneHotCategorical,
    Poisson,
)

import samplegrad as sg
from samplegrad._expectation import resolve
from samplegrad.estimators import catalog
from samplegrad.estimators.antithetic import Antithetic

from problems import RecordingCost


def classes_supporting(dist) -> list[str]:
    """The sorted names of the registered classes (not their variants) that can handle ``dist``,
    asked of each class."""
    return sorted(
        name
        for name, entry in catalog.CATALOG.items()
        if not entry.is_variant and entry.cls.supports(dist)
    )


NAMED_WITHOUT_ARGUMENTS = [
    pytest.param(entry, id=name)
    for name, entry in catalog.CATALOG.items()
    if not entry.required_options
]
"""The names that build an estimator without arguments: every class's and variant's but RELAX's
(its control is the caller's)."""


def distribution_for(entry: catalog.Entry, param: torch.Tensor):
    """A ``Normal`` (loc ``param``) or, for a discrete estimator, a ``Bernoulli`` (logits)."""
    normal = Normal(param, torch.ones_like(param))
    return normal if entry.supports(normal) else Bernoulli(logits=param)


def square_sum(z):
    return z.pow(2).sum(-1)


def test_names_resolve_to_their_classes():
    for name, entry in catalog.CATALOG.items():
        assert issubclass(entry.cls, sg.Estimator)
        assert entry.is_variant == (name != entry.cls.name)
        if not entry.required_options and not entry.stateful:
            assert type(resolve(name, square_sum, Normal(0.0, 1.0), 2)) is entry.cls


@pytest.mark.parametrize("name", list(catalog.CATALOG))
def test_expectation_takes_every_name_without_state_of_its_own(name, generator):
    """A name builds its estimator unless the caller must build part of it (RELAX's control) or
    the name stands for state that must persist between calls (``"score-ma"``'s moving average,
    REBAR's trained temperature, which one shared instance per name would mix between problems
    and never train): those ask for an instance."""
    entry = catalog.CATALOG[name]
    param = torch.zeros(3, requires_grad=True)
    dist = distribution_for(entry, param)
    num_samples = entry.min_num_samples + entry.min_num_samples % 2  # antithetic pairs: even

    def run():
        return sg.expectation(lambda z: z**2, dist, name, num_samples, generator)

    if entry.required_options:
        with pytest.raises(ValueError, match=rf"{name!r} cannot be built from its name alone"):
            run()
    elif entry.stateful:
        message = rf"{name!r} keeps state between calls.*create the instance once and keep it"
        with pytest.raises(ValueError, match=message):
            run()
    else:
        run().sum().backward()
        assert param.grad is not None and torch.isfinite(param.grad).all()


def test_stateful_names_are_refused():
    """``"score-ma"`` (a variant) and ``"rebar"`` (a class) are two: the refusal above is not
    vacuous."""
    assert catalog.CATALOG["score-ma"].stateful and catalog.CATALOG["score-ma"].is_variant
    with pytest.raises(ValueError, match=r"e\.g\. estimator = sg\.ScoreFunction\(\.\.\.\)"):
        sg.expectation(lambda b: b, Bernoulli(logits=torch.zeros(1)), "score-ma")
    assert catalog.CATALOG["rebar"].stateful and not catalog.CATALOG["rebar"].is_variant
    with pytest.raises(ValueError, match=r"e\.g\. estimator = sg\.REBAR\(\.\.\.\)"):
        sg.expectation(lambda b: b, Bernoulli(logits=torch.zeros(1)), "rebar", 2)


@pytest.mark.parametrize("name", ["pathwise", "score"])
def test_value_is_sample_mean_of_f(name, generator):
    dist = Independent(Normal(torch.randn(3, 2), torch.ones(3, 2)), 1)
    cost = RecordingCost(square_sum)
    surrogate = sg.expectation(cost, dist, name, 5, generator)
    assert surrogate.shape == (3,)
    assert torch.allclose(surrogate.detach(), cost.outputs[0].mean(0))


@pytest.mark.parametrize("name", ["pathwise", "score", "gumbel", "straight-through"])
def test_generator_makes_results_reproducible(name):
    if name in ("pathwise",):

        def make():
            return Independent(Normal(loc, torch.ones(4)), 1)
    else:

        def make():
            return Independent(Bernoulli(logits=loc), 1)

    loc = torch.linspace(-1, 1, 4, requires_grad=True)
    results = []
    for seed in (7, 7, 8):
        loc.grad = None
        surrogate = sg.expectation(square_sum, make(), name, 6, torch.Generator().manual_seed(seed))
        surrogate.backward()
        results.append((surrogate.detach(), loc.grad.clone()))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert not torch.equal(results[0][1], results[2][1])


@pytest.mark.parametrize(
    "dist", [Gamma(torch.tensor([2.0]), torch.tensor([1.0])), Poisson(torch.tensor([3.0]))]
)
def test_generator_for_other_families_leaves_global_rng_alone(dist):
    """Families without a native generator path are sampled from a seed the generator gives."""
    name = "pathwise" if dist.has_rsample else "score"
    state = torch.get_rng_state()
    first = sg.expectation(lambda z: z, dist, name, 8, torch.Generator().manual_seed(1))
    second = sg.expectation(lambda z: z, dist, name, 8, torch.Generator().manual_seed(1))
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), state)


def test_auto_chooses_pathwise_score_loo_or_no_baseline_and_warns_once():
    normal = Normal(torch.zeros(2), torch.ones(2))
    with pytest.warns(sg.AutoEstimatorWarning, match="pathwise"):
        sg.expectation(lambda z: z, normal)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sg.expectation(lambda z: z, normal)  # the same choice is announced only once

    bernoulli = Bernoulli(logits=torch.zeros(2))
    with pytest.warns(sg.AutoEstimatorWarning, match="leave-one-out"):
        sg.expectation(lambda z: z, bernoulli, num_samples=2)
    with pytest.warns(sg.AutoEstimatorWarning, match=r"without a baseline.*MovingAverage"):
        sg.expectation(lambda z: z, bernoulli, num_samples=1)


def test_auto_keeps_no_hidden_state():
    """With one sample ``"auto"`` is the stateless score function: a moving average kept per
    cost function would be shared between models and saved in no ``state_dict``."""
    bernoulli = Bernoulli(logits=torch.zeros(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sg.AutoEstimatorWarning)
        for num_samples in (1, 2):
            chosen = resolve("auto", lambda b: b + 1.0, bernoulli, num_samples)
            name = catalog.auto(bernoulli, num_samples, stateless=True)
            assert not chosen.has_state and not catalog.entry(name).stateful
            assert chosen is resolve(name, None, bernoulli, num_samples)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("entry", NAMED_WITHOUT_ARGUMENTS)
def test_computations_follow_the_parameters_dtype(entry, dtype, generator):
    """float32 and float64 are in the conformance suite for every family; bfloat16 here."""
    param = torch.zeros(3, dtype=dtype, requires_grad=True)
    dist = distribution_for(entry, param)
    surrogate = sg.expectation(lambda z: z**2 * 2, dist, entry.build(), 2, generator)
    assert surrogate.dtype == dtype
    surrogate.sum().backward()
    assert param.grad.dtype == dtype
    assert torch.isfinite(param.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("entry", NAMED_WITHOUT_ARGUMENTS)
def test_cuda(entry):
    param = torch.zeros(3, device="cuda", requires_grad=True)
    generator = torch.Generator(device="cuda").manual_seed(0)
    dist = distribution_for(entry, param)
    surrogate = sg.expectation(lambda z: z**2 * 2, dist, entry.build(), 2, generator)
    surrogate.sum().backward()
    assert surrogate.device.type == param.grad.device.type == "cuda"


def test_implicit_reparameterization_families_are_pathwise():
    for dist in (
        Gamma(torch.tensor(2.0), torch.tensor(1.0)),
        Beta(torch.tensor(2.0), torch.tensor(3.0)),
    ):
        assert sg.Pathwise.supports(dist)


# --- errors ------------------------------------------------------------------------------


def test_pathwise_on_bernoulli_names_the_estimators_that_can():
    capable = classes_supporting(Bernoulli(logits=torch.zeros(2)))
    assert {"arm", "score", "enumerate"} <= set(capable) and "pathwise" not in capable
    message = "estimator 'pathwise' cannot handle Bernoulli; estimators that can: " + ", ".join(
        repr(n) for n in capable
    )
    with pytest.raises(TypeError, match=message):
        sg.expectation(lambda b: b, Bernoulli(logits=torch.zeros(2)), "pathwise")


def test_relaxation_on_normal_is_a_type_error():
    message = r"'gumbel' cannot handle Independent of Normal.*'pathwise'"
    with pytest.raises(TypeError, match=message):
        sg.expectation(square_sum, Independent(Normal(torch.zeros(2), 1.0), 1), "gumbel")


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        sg.GumbelSoftmax(temperature)


def test_temperature_annealed_to_zero_is_caught_at_use():
    estimator = sg.GumbelSoftmax(0.5)
    estimator.temperature.fill_(0.0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        sg.expectation(lambda b: b, Bernoulli(logits=torch.zeros(2)), estimator)


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_infinite_parameters(bad):
    with pytest.raises(ValueError, match=r"dist\.loc contains NaN or inf"):
        sg.expectation(lambda z: z, Normal(torch.tensor([0.0, bad]), 1.0), "pathwise")
    with pytest.raises(ValueError, match=r"dist\.base_dist\.logits contains NaN or inf"):
        sg.expectation(square_sum, Independent(Bernoulli(logits=torch.tensor([bad])), 1), "score")


def test_large_finite_parameters_whose_sum_overflows_are_accepted():
    loc = torch.full((10,), 6e4, dtype=torch.float16)  # the float16 sum is inf
    surrogate = sg.expectation(lambda z: z - loc, Normal(loc, 1.0), "pathwise")
    assert torch.isfinite(surrogate).all()


def test_nan_parameters_are_rejected_naming_the_parameter():
    """torch.distributions already rejects NaN at construction, naming the parameter."""
    with pytest.raises(ValueError, match="parameter loc"):
        sg.expectation(lambda z: z, Normal(torch.tensor([math.nan]), 1.0), "pathwise")


def test_value_checks_follow_validate_args():
    """``validate_args=False`` opts out of value checks, as in torch.distributions."""
    dist = Normal(torch.tensor([math.inf]), 1.0, validate_args=False)
    assert torch.isnan(sg.expectation(lambda z: z - z, dist, "pathwise")).all()


@pytest.mark.parametrize("num_samples", [0, -1, 1.5, True])
def test_bad_num_samples(num_samples):
    with pytest.raises(ValueError, match="num_samples must be"):
        sg.expectation(lambda z: z, Normal(torch.zeros(1), 1.0), "pathwise", num_samples)


def test_leave_one_out_needs_two_samples():
    with pytest.raises(ValueError, match="num_samples must be >= 2 for the LeaveOneOut baseline"):
        sg.expectation(lambda b: b, Bernoulli(logits=torch.zeros(1)), sg.ScoreFunction("loo"))


def test_wrong_cost_shape_names_the_expected_one():
    dist = Independent(Normal(torch.zeros(3, 2), 1.0), 1)
    message = r"f must return values of shape .* = \(4, 3\).*got \(4, 3, 2\)"
    with pytest.raises(ValueError, match=message):
        sg.expectation(lambda z: z, dist, "pathwise", 4)
    with pytest.raises(ValueError, match="got float"):
        sg.expectation(lambda z: 1.0, dist, "pathwise", 4)


def test_unknown_estimator_name_lists_the_valid_ones():
    names = ", ".join(repr(name) for name in [*catalog.CATALOG, "auto"])
    assert "'score-loo'" in names and "'pathwise'" in names
    with pytest.raises(ValueError, match=re.escape(f"{names}, got 'reinforce'")):
        sg.expectation(lambda z: z, Normal(0.0, 1.0), "reinforce")


def test_relax_by_name_asks_for_an_instance():
    with pytest.raises(ValueError, match=r"'relax' cannot be built from its name alone.*sg\.RELAX"):
        sg.expectation(lambda b: b, Bernoulli(logits=torch.zeros(1)), "relax")


def test_non_distribution_and_non_callable():
    with pytest.raises(TypeError, match=r"dist must be a torch\.distributions\.Distribution"):
        sg.expectation(lambda z: z, torch.zeros(2), "score")
    with pytest.raises(TypeError, match="f must be a callable"):
        sg.expectation(3.0, Normal(torch.zeros(1), 1.0), "pathwise")


def test_bad_generator():
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        sg.expectation(lambda z: z, Normal(torch.zeros(1), 1.0), "pathwise", 1, 42)


def test_bad_baseline_and_decay():
    with pytest.raises(ValueError, match="baseline must be None, 'loo'"):
        sg.ScoreFunction(baseline="mean")
    with pytest.raises(ValueError, match=r"decay must be a number in \[0, 1\)"):
        sg.MovingAverage(1.0)


def test_one_hot_categorical_and_categorical_are_supported_by_discrete_estimators():
    """Every estimator of a Bernoulli but the antithetic ones (binary only) takes both."""
    binary_only = {
        name for name, entry in catalog.CATALOG.items() if issubclass(entry.cls, Antithetic)
    }
    assert binary_only, "the antithetic estimators take only Bernoulli variables"
    bernoulli = set(classes_supporting(Bernoulli(logits=torch.zeros(3))))
    for dist in (Categorical(logits=torch.zeros(3)), OneHotCategorical(logits=torch.zeros(3))):
        assert sg.estimators_supporting(dist) == sorted(bernoulli - binary_only)
