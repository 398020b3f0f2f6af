import pytest
import torch

# One thread: the suite's micro models gain nothing from a second one, and on a loaded 2-core CI
# machine OpenMP threads waiting for each other made every op several times slower (measured).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory):
    """Save a micro model for end-to-end tests.

    The model has every block, causal temporal blocks made active.
    """
    from hcdp_model.checkpoint import save_checkpoint
    from hcdp_model.model import HCDPModel
    from tests.model.helpers import activate_temporal, micro_config

    torch.manual_seed(0)
    model = activate_temporal(HCDPModel(micro_config(temporal=True)))
    return save_checkpoint(model, tmp_path_factory.mktemp("micro") / "micro")
