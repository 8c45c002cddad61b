"""A zeroed CPU tensor whose memory the kernel is asked to back with 2 MiB transparent huge pages.

The KV pool is read block by block in whatever order the block tables give, so a decode step lands on a
new 4 KiB page every few kilobytes and pays a TLB miss for most of them; with 2 MiB pages one TLB entry
covers 128 blocks of the 26.7 M benchmark model. The hint is `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned
part of the buffer before its first touch, so the zeroing itself faults huge pages in. It needs Linux with
transparent huge pages in "always" or "madvise" mode (/sys/kernel/mm/transparent_hugepage/enabled); elsewhere,
and where the kernel refuses, the tensor is the same plain zeroed tensor as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import sys

import torch

log = logging.getLogger(__name__)

HUGE_PAGE = 2 << 20
MADV_HUGEPAGE = 14  # Linux <sys/mman.h>


def _madvise_huge(address: int, length: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if libc.madvise(address, length, MADV_HUGEPAGE) == 0:
        return True
    log.info("madvise(MADV_HUGEPAGE) refused (errno %d): the KV pool stays on 4 KiB pages", ctypes.get_errno())
    return False


def huge_page_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, bool]:
    """Zeros of `shape` on the CPU, 2 MiB-aligned, and whether the huge-page hint was taken."""
    numel, item = math.prod(shape), dtype.itemsize
    nbytes = numel * item
    if not sys.platform.startswith("linux") or nbytes < HUGE_PAGE:
        return torch.zeros(shape, dtype=dtype), False
    pad = HUGE_PAGE // item
    raw = torch.empty(numel + pad, dtype=dtype)  # untouched: the allocator maps it lazily
    start = raw.data_ptr()
    aligned = (start + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE
    offset = (aligned - start) // item  # exact: the allocator aligns to 64 bytes, a multiple of every element size
    taken = _madvise_huge(aligned, nbytes // HUGE_PAGE * HUGE_PAGE)
    tensor = raw[offset:offset + numel].view(shape)
    tensor.zero_()
    return tensor, taken
