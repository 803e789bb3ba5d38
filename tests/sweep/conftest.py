"""The sweep tests train on the CPU of a shared machine: one BLAS thread per process."""
import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine is shared: one BLAS thread per process avoids oversubscription
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
