"""The process's resident memory and its high-water mark, for measurements of peak memory (benchmarks, tests).

torch's CPU allocations bypass Python's allocator, so tracemalloc does not see them; the kernel's counters do.
On Linux the high-water mark (VmHWM) can be reset to the current resident size by writing 5 to
/proc/self/clear_refs (Linux ≥ 4.0), so the peak read after a piece of work is that work's own, not that of the
imports or of earlier work in the same process. Where that file is refused (another OS, a locked-down
container), `reset_peak` says so and `peak_bytes` falls back to getrusage's whole-process peak.
"""

from __future__ import annotations

import resource
import sys


def status_bytes(field: str) -> int | None:
    """A size field of /proc/self/status (e.g. "VmRSS", "VmHWM") in bytes; None where it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset the resident high-water mark to the current resident size; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    """The resident high-water mark (since the last `reset_peak`), else getrusage's peak of the whole process."""
    hwm = status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
