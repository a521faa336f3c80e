"""A LeNet-5 training step at batch 64 (the epoch is in ``python -m dlcore bench`` only)."""
import pytest

from dlcore.bench.cases import IMPLS, all_cases

CASES = [c for c in all_cases(include_full_only=False) if c.group == "model"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_model_step(run_case, case, impl):
    run_case(case, impl)
