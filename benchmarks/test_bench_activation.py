"""Activations forward+backward at 1e6 and 1e7 elements; softmax-cross-entropy."""
import pytest

from dlcore.bench.cases import IMPLS, all_cases

CASES = [c for c in all_cases(include_full_only=False) if c.group in ("activation", "loss")]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_activation(run_case, case, impl):
    run_case(case, impl)
