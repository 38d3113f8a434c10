"""The peers CI must have: torch (the training lab, Triton), mmasim (tensor-core cross-checks), Dask.

`make test` installs them (tools/requirements-dev.txt); under CI a missing peer fails here, so the
checks that need it cannot pass by skipping. Outside CI a missing peer is a visible skip."""
import importlib
import os

import pytest

PEERS = ["torch", "triton", "mmasim", "dask", "distributed", "pyarrow", "tqdm"]


@pytest.mark.parametrize("name", PEERS)
def test_peer_is_installed(name):
    try:
        importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (tools/requirements-dev.txt) but cannot be imported: {exc}")
        pytest.skip(f"{name} is not installed here ({exc}); `make deps` installs it")
