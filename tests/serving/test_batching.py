import pytest

from attnrec.serving.batching import BatchWait
from attnrec.serving.config import BatchConfig

WINDOW = 0.005


def waits(sizes, adaptive=True):
    policy = BatchWait(BatchConfig(batch_wait_timeout_s=WINDOW, adaptive_wait=adaptive))
    return [policy.after(n) for n in sizes]


def test_a_lone_caller_stops_paying_the_window():
    assert waits([1] * 10) == [0.0] * 10


def test_overlapping_requests_bring_the_window_back():
    assert waits([1] * 10 + [4, 4])[-1] == WINDOW


def test_under_load_a_stray_singleton_keeps_the_window():
    assert waits([8] * 10 + [1, 1, 8, 1]) == [WINDOW] * 14


def test_an_occasional_pair_at_low_load_does_not_restore_it():
    assert waits([1] * 10 + [2] + [1] * 5) == [0.0] * 16


@pytest.mark.parametrize("sizes", [[1] * 20, [8] * 20, [1, 8] * 10])
def test_fixed_wait_when_adaptive_wait_is_off(sizes):
    assert waits(sizes, adaptive=False) == [WINDOW] * len(sizes)
