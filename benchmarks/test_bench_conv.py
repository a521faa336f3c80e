"""conv2d forward and forward+backward: LeNet conv1/conv2, 64-channel 32x32, stride 2."""
import pytest

from dlcore.bench.cases import IMPLS, all_cases

CASES = [c for c in all_cases(include_full_only=False) if c.group == "conv"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_conv2d(run_case, case, impl):
    run_case(case, impl)
