"""One optimizer step (SGD momentum, Adagrad, RMSprop, Adam, AdamW) on 1e6 and 1e7 parameters."""
import pytest

from dlcore.bench.cases import IMPLS, all_cases

CASES = [c for c in all_cases(include_full_only=False) if c.group == "optim"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_optimizer_step(run_case, case, impl):
    run_case(case, impl)
