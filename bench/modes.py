"""How big a run is: requests per level, rounds, webhook rates and step length, store sizes."""

from __future__ import annotations

from dataclasses import dataclass

# Doubling up to 200/s, then by √2: the ceilings compared (bare against Paylink, 100,000
# links against 100) are found to within a step of 30 % instead of 50 %.
RATES = (25, 50, 100, 200, 283, 400, 566, 800, 1131, 1600, 2263, 3200, 4525, 6400, 9051)


@dataclass(frozen=True)
class Mode:
    name: str
    concurrency: tuple[int, ...]
    requests: int  # per concurrency level, kind and target, over all rounds
    rounds: int  # interleaved rounds the requests are split into
    rates: tuple[int, ...]
    step_seconds: float
    small: int
    large: int
    home_links: int
    home_samples: int
    slow_gateway_delay: float = 5.0


MODES = {
    "default": Mode("default", (1, 8, 32), 300, 3, RATES, 5, 100, 100_000, 1000, 21),
    "full": Mode("full", (1, 8, 32), 1000, 5, RATES, 30, 100, 100_000, 1000, 50),
    "smoke": Mode("smoke", (1, 2), 20, 2, (10,), 1, 100, 150, 50, 4, 0.2),
}
