"""One size format everywhere: fleet.units.human_bytes, and the host-side program's copy of it."""
from __future__ import annotations

import random

import pytest

from fleet.hostside.health import human_bytes as hostside_human_bytes
from fleet.units import human_bytes

KB, MB, GB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1 KB"), (1536, "1.5 KB"),
    (458 * KB + 100, "458 KB"), (int(1.9 * MB), "1.9 MB"), (2 * MB, "2 MB"), (int(9.96 * MB), "10 MB"),
    (12 * MB + 300 * KB, "12 MB"), (int(1.2 * GB), "1.2 GB"), (-3 * MB, "-3 MB"), (None, "-"),
])
def test_human_bytes_is_binary_with_a_space(n, text):
    assert human_bytes(n) == text


def test_the_host_side_copy_formats_every_size_the_same():
    rng = random.Random(7)
    sizes = [0, 1, 1023, 1024, 10 * KB - 1, 10 * KB, MB - 1, MB, 10 * MB - 52429, 5 * GB]
    sizes += [rng.randrange(0, 20 * GB) for _ in range(2000)] + [rng.randrange(0, 20 * MB) for _ in range(2000)]
    for n in sizes:
        assert hostside_human_bytes(n) == human_bytes(n), n
