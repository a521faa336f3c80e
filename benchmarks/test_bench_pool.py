"""max_pool2d and avg_pool2d (2x2) forward+backward on the convolution output shapes."""
import pytest

from dlcore.bench.cases import IMPLS, all_cases

CASES = [c for c in all_cases(include_full_only=False) if c.group == "pool"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_pool2d(run_case, case, impl):
    run_case(case, impl)
