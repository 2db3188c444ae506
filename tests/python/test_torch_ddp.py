"""lstmcore.torch under torch.nn.parallel.DistributedDataParallel: two processes (gloo over the loopback
interface, 127.0.0.1; rendezvous through a file, so no port can be taken meanwhile), each on half
of the batch, end with the gradients of one process on the whole batch."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import lstmcore  # noqa: E402
from conftest import TOL64  # noqa: E402

WORKER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import torch
    import lstmcore.torch as lt

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(Net()).double()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lt.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
            self.gru = lt.GRUCell(10, 4, reset_after=False)
            self.head = torch.nn.Linear(4, 1)
        def forward(self, x):
            y, _ = self.lstm(x)
            return self.head(self.gru(y[:, -1])).squeeze(1)

    def data():
        g = torch.Generator().manual_seed(1)
        return torch.randn(8, 6, 3, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)

    def grads(m):
        return {n: p.grad.numpy().copy() for n, p in m.named_parameters()}

    out = sys.argv[1]
    rank = int(os.environ.get("RANK", -1))
    x, t = data()
    if rank < 0:  # one process, the whole batch
        m = model()
        torch.nn.functional.mse_loss(m(x), t).backward()
        np.savez(out, **grads(m))
    else:
        torch.distributed.init_process_group("gloo", init_method="file://" + os.environ["RENDEZVOUS"], rank=rank,
                                             world_size=2)
        m = torch.nn.parallel.DistributedDataParallel(model())
        half = slice(rank * 4, rank * 4 + 4)
        torch.nn.functional.mse_loss(m(x[half]), t[half]).backward()  # DDP averages over the ranks
        if rank == 0:
            np.savez(out, **{k.removeprefix("module."): v for k, v in grads(m).items()})
        # Both ranks reach teardown together: a rank that destroys its group while the other still
        # works can abort gloo's threads ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
""")


def test_ddp_two_processes_equal_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(lstmcore.__file__)))  # this lstmcore
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
               RENDEZVOUS=str(tmp_path / "rendezvous"), GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one.npz")], env=env, timeout=120,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "ddp.npz")],
                              env=dict(env, RANK=str(r), WORLD_SIZE="2"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), errors
    one, ddp = np.load(tmp_path / "one.npz"), np.load(tmp_path / "ddp.npz")
    assert sorted(one.files) == sorted(ddp.files) and len(one.files) == 22
    for name in one.files:
        err = np.linalg.norm(ddp[name] - one[name]) / max(np.linalg.norm(one[name]), 1e-300)
        assert err <= TOL64, (name, err)
