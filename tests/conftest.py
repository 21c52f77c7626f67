import pytest
import torch

from specdec.testing import FixtureSpec, fixture_pair, random_model


@pytest.fixture(scope="session")
def pair():
    """(target, draft) that agree most of the time but not always."""
    return fixture_pair(FixtureSpec(eps=0.2))


@pytest.fixture(scope="session")
def unrelated_draft():
    """A random 2-layer model with the fixture's vocabulary: it almost never agrees."""
    return random_model(FixtureSpec(), layers=2, seed=123)


@pytest.fixture
def prompt():
    return torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(7))


@pytest.fixture(autouse=True)
def fresh_calibration_cache():
    """``num_draft_tokens="auto"`` without a cache uses one per process: start every test without it,
    so no test sees costs or an α̂ that another test measured."""
    from specdec.auto.calibration import default_calibration_cache

    default_calibration_cache.cache_clear()
    yield default_calibration_cache()
    default_calibration_cache.cache_clear()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models on a shared, busy CPU run far faster on one thread than with threads contending."""
    from specdec.testing import one_thread

    with one_thread():
        yield
