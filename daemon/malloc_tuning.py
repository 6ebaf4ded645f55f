"""Keep the C heap's large blocks for reuse instead of handing them back to the kernel each time.

Every detection allocates a few multi-megabyte arrays (the runtime's output copies, the
dequantised outputs, decoded images) and frees them a few milliseconds later. glibc serves
blocks that large with mmap and gives them back with munmap, so each request page-faults
(and the kernel zeroes) them afresh: measured on 2 cores with YOLOv5s TFLite int8, that was
3–4 ms of a 17 ms detection. Serving them from the heap and trimming it only past 64 MiB of
free space keeps them mapped; the daemon's RSS grows by about 10 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's own ceiling for its adaptive threshold
TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_large_blocks() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not ok:
        log.debug("mallopt refused the heap thresholds; large blocks stay mmapped per request")
    return ok
