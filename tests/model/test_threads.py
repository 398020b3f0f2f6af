"""The default inference thread count: OMP_NUM_THREADS when set, else half the CPUs (1..4)."""
import os

from hcdp_model import threads
import pytest


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 1), (3, 1), (8, 4), (64, 4)])
def test_default_is_half_the_available_cpus_between_one_and_four(monkeypatch, cpus, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert threads.default_threads() == expected


def test_omp_num_threads_is_the_users_choice(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert threads.default_threads() == 1


def test_set_threads_refuses_zero():
    with pytest.raises(ValueError, match="expected threads >= 1, got 0"):
        threads.set_threads(0)
