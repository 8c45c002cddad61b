"""The KV pool's huge-page allocation: same zeros, same shape, 2 MiB-aligned where the hint was taken."""

import sys

import pytest
import torch

from chatstack.engine.huge_pages import HUGE_PAGE, huge_page_zeros


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pool_is_zeroed_contiguous_and_aligned(dtype):
    shape = (2, 2, 300, 16, 2, 64)
    pool, taken = huge_page_zeros(shape, dtype)
    assert pool.shape == shape and pool.dtype == dtype and pool.is_contiguous()
    assert not pool.any()
    assert pool.data_ptr() % HUGE_PAGE == 0
    pool[1, 1, 299, 15, 1, 63] = 3.0  # the last element is in the buffer and holds a value
    assert pool.flatten()[-1].item() == 3.0 and pool.sum().item() == 3.0
    if sys.platform.startswith("linux"):
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as modes:
            if "[never]" not in modes.read():
                assert taken


def test_small_pool_is_a_plain_tensor():
    pool, taken = huge_page_zeros((4, 16), torch.float32)
    assert not taken and pool.shape == (4, 16) and not pool.any()
