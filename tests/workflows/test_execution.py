"""The same run on every scheduler: local threads, local processes, a distributed cluster."""

import numpy as np
import pytest

from mtinsar.config import ExecutionConfig, RunConfig
from mtinsar.errors import ConfigError
from mtinsar.workflows.execution import executor
from mtinsar.workflows.pipeline import load_input, run_sbas


@pytest.fixture(scope="module")
def reference_run(noise_free_frame):
    cfg = RunConfig()
    cfg.ingest.chunk_size = 32  # 2x3 blocks on the 60x80 scene: work to spread
    stack = load_input(noise_free_frame, cfg)
    with executor(ExecutionConfig(scheduler="synchronous")):
        return stack, cfg, run_sbas(stack, cfg).result


def _assert_same(result, expected):
    for name in ("displacement", "velocity", "velocity_std", "temporal_coherence", "mask"):
        np.testing.assert_array_equal(result[name].values, expected[name].values)


def test_threads_and_processes_give_the_single_thread_result(reference_run):
    stack, cfg, expected = reference_run
    for scheduler in ("threads", "processes"):
        with executor(ExecutionConfig(scheduler=scheduler, n_workers=2)):
            _assert_same(run_sbas(stack, cfg).result, expected)


def test_distributed_cluster_over_tcp_gives_the_same_result(reference_run, tmp_path):
    distributed = pytest.importorskip("distributed")  # a declared dependency: always present
    stack, cfg, expected = reference_run
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        protocol="tcp",
        dashboard_address=None,
        local_directory=str(tmp_path),
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        with executor(ExecutionConfig(scheduler=cluster.scheduler_address)):
            result = run_sbas(stack, cfg, store=tmp_path / "work.zarr").result
            _assert_same(result, expected)


def test_bad_scheduler_names_the_key():
    with (
        pytest.raises(ConfigError, match="execution.scheduler"),
        executor(ExecutionConfig(scheduler="gpu-please")),
    ):
        pass
    with (
        pytest.raises(ConfigError, match="tcp://127.0.0.1:9"),
        executor(ExecutionConfig(scheduler="tcp://127.0.0.1:9")),
    ):
        pass
