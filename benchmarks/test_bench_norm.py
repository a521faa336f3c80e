"""batch_norm and instance_norm (affine, training mode) forward+backward."""
import pytest

from dlcore.bench.cases import IMPLS, all_cases

CASES = [c for c in all_cases(include_full_only=False) if c.group == "norm"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_norm(run_case, case, impl):
    run_case(case, impl)
