"""The one seed-derivation scheme (pure Python, no torch).

Every derived seed comes from :func:`derive_seed`: the base seed and the
identifying parts are joined as text with the unit separator ``\\x1f``
(``"0\\x1ftests/test_a.py::test_b\\x1f\\x1f0"``), hashed with SHA-256, and the first
8 bytes of the digest, read big-endian and shifted right by one bit, are the
seed (``0 <= seed < 2**63``). It is used

- per input by ``clever_scores``: ``derive_seed(run_seed, i)``;
- per test by the pytest plugin: ``derive_seed(base, node_id, name, call)``;
- per input by ``attack_checks``: ``derive_seed(seed, i)``.

Unlike ``hash()`` the result does not depend on the process, the test order or
the xdist worker, and unlike ``seed + i`` neighbouring runs do not share seeds.
"""

from __future__ import annotations

import hashlib
import secrets

from pytest_clever.core.validation import SEED_LIMIT, check_seed


def derive_seed(base: int, *parts: object) -> int:
    """A stable 63-bit seed from a base seed and identifiers (input index, test id, name, call)."""
    text = "\x1f".join([str(check_seed(base)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def resolve_seed(seed: object) -> int:
    """A validated seed, or a fresh random one for ``None`` (recorded in results so runs can be repeated)."""
    return secrets.randbelow(SEED_LIMIT) if seed is None else check_seed(seed)


__all__ = ["derive_seed", "resolve_seed"]
