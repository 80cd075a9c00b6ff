"""clever_executor / --clever-executor: the fixture's calls go to the executor, with the same records."""

import json
from collections import Counter

import pytest

TEST_FILE = """
import os, sys
import torch
from torch import nn

class Logged(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(x)

    def __setstate__(self, state):
        super().__setstate__(state)
        with open("loads.txt", "a") as f:
            f.write(f"{os.getpid()}\\n")

def test_scores(clever):
    clever.assert_robust(Logged(), torch.randn(4, 6, generator=torch.Generator().manual_seed(1)), min_score=0)
    print("CALLER", os.getpid(), "distributed" in sys.modules or "dask" in sys.modules)
    with open("caller.txt", "w") as f:
        f.write(str(os.getpid()))
"""


@pytest.mark.slow  # real pytest subprocesses (an xdist worker, a process pool): CI runs it
def test_the_ini_setting_sends_the_fixture_s_calls_to_the_executor_with_the_same_records(pytester):
    pytester.makepyfile(
        execfactory="""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        def make_executor():
            return ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
        """
    )
    pytester.makepyfile(test_scored=TEST_FILE)
    pytester.makeini("[pytest]\nclever_radius = 1\nclever_n_batches = 20\nclever_batch_size = 32\n")
    local = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--clever-json=local.json")
    local.assert_outcomes(passed=1)
    local.stdout.fnmatch_lines(["*CALLER * False"])  # unset: scoring through the plugin imports no dask
    assert not (pytester.path / "loads.txt").exists()

    pytester.makeini(
        "[pytest]\nclever_radius = 1\nclever_n_batches = 20\nclever_batch_size = 32\n"
        "clever_executor = execfactory:make_executor\n"
    )
    remote = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "-n", "1", "--clever-json=remote.json")
    remote.assert_outcomes(passed=1)
    loads = Counter((pytester.path / "loads.txt").read_text().split())
    caller = (pytester.path / "caller.txt").read_text()
    assert loads and caller not in loads and set(loads.values()) == {1}  # under -n: the xdist worker's own pool

    def results(name):
        records = json.loads((pytester.path / name).read_text())["records"]
        return [{k: v for k, v in r.items() if k != "elapsed"} for record in records for r in record["results"]]

    assert results("local.json") == results("remote.json")  # scores, seeds, batch maxima: all of it


def test_a_bad_executor_setting_is_a_usage_error(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("--clever-executor=not-a-spec")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--clever-executor*module:factory*"])


@pytest.mark.slow  # a real pytest subprocess with a process pool forked after torch ran on two threads
def test_a_default_process_pool_from_the_setting_scores_after_an_earlier_test_ran_torch_on_threads(pytester):
    pytester.makepyfile(
        poolfactory="""
        from concurrent.futures import ProcessPoolExecutor

        def make_executor():
            return ProcessPoolExecutor(2)  # the platform's default start method: fork on Linux before Python 3.14
        """
    )
    pytester.makepyfile(
        test_order="""
        import torch

        def test_a_threads():
            torch.set_num_threads(2)
            a = torch.randn(512, 512)
            for _ in range(5):
                a @ a

        def test_b_scores(clever):
            torch.manual_seed(0)
            clever.assert_robust(torch.nn.Linear(6, 4), torch.randn(4, 6), min_score=0)
        """
    )
    pytester.makeini(
        "[pytest]\nclever_radius = 1\nclever_n_batches = 20\nclever_batch_size = 32\n"
        "clever_executor = poolfactory:make_executor\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=2)
