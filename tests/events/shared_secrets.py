"""A secrets backend for tests that span processes (the test process and a real Celery worker).

The memory backend draws random keys per process, so a worker could not decrypt what the test
process encrypted. This one derives each named key from a fixed seed: same keys in every
process, still real AES-GCM through the facade. Tests only.
"""

from __future__ import annotations

import hashlib

from payera.secrets.backends.memory import MemoryBackend

DOTTED_PATH = "tests.events.shared_secrets.SharedTestBackend"


class SharedTestBackend(MemoryBackend):
    def _versions(self, key_name: str) -> list[bytes]:
        with self._lock:
            return self._keys.setdefault(key_name, [hashlib.sha256(b"payera-tests:" + key_name.encode()).digest()])
