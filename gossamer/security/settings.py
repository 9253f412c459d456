"""Workload certificate settings, with Istio's names (`gossamer up` flags)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from gossamer.resources.duration import parse_duration

# Istio: DEFAULT_WORKLOAD_CERT_TTL (istiod) / SECRET_TTL (pilot-agent), 24h.
DEFAULT_WORKLOAD_CERT_TTL = timedelta(hours=24)
# Istio: SECRET_GRACE_PERIOD_RATIO - rotate once this fraction of the lifetime is left.
DEFAULT_GRACE_PERIOD_RATIO = 0.2
MIN_WORKLOAD_CERT_TTL = timedelta(seconds=10)


@dataclass(frozen=True)
class CertSettings:
    workload_cert_ttl: timedelta = DEFAULT_WORKLOAD_CERT_TTL
    secret_grace_period_ratio: float = DEFAULT_GRACE_PERIOD_RATIO

    @property
    def rotate_fraction(self) -> float:
        """The share of a certificate's lifetime after which the agent replaces it."""
        return 1.0 - self.secret_grace_period_ratio

    @classmethod
    def parse(cls, ttl: str, ratio: float) -> CertSettings:
        """From `up --workload-cert-ttl DURATION --secret-grace-period-ratio R`; ValueError names the flag."""
        try:
            seconds = parse_duration(ttl)
        except ValueError as e:
            raise ValueError(f"--workload-cert-ttl: {e}") from None
        if timedelta(seconds=seconds) < MIN_WORKLOAD_CERT_TTL:
            raise ValueError(f"--workload-cert-ttl: {ttl} is shorter than {MIN_WORKLOAD_CERT_TTL.total_seconds():.0f}s")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"--secret-grace-period-ratio: {ratio} is not between 0 and 1")
        return cls(timedelta(seconds=seconds), ratio)
