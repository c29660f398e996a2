"""What the destination tests share: engine options that retry fast (a test never waits for a
real backoff). The `client` fixture is in conftest.py."""

from reverse_etl.engine import EngineOptions
from reverse_etl.pacing import RetryPolicy

FAST = EngineOptions(retry=RetryPolicy(attempts=6, base_seconds=0.01, cap_seconds=0.05), seed=1)
