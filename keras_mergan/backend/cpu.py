"""What the CPU offers, for every backend module."""

import functools
from pathlib import Path

# CPU instruction sets with bfloat16 matrix units, as /proc/cpuinfo names them.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_has_bfloat16_units(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU has AMX-BF16 or AVX512-BF16 (Linux; False elsewhere).

    Example:

    >>> cpu_has_bfloat16_units("/no/such/file")
    False
    """
    try:
        flags = Path(cpuinfo).read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)
