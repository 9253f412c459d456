"""Signing a pod's certificate request for the runtime (its agents ask over the API socket).

The runtime is trusted for which pods it runs, as a kubelet is; a CSR is signed only for a pod it
reported, and only for that pod's own identity (namespace and service account). Identity hardening
(proof of possession by the pod itself) builds on this one function.
"""

from __future__ import annotations

from datetime import timedelta

from gossamer.controlplane.runtime_view import RuntimeView
from gossamer.security import CertificateAuthority, CsrRejected

MAX_REQUESTED_TTL = timedelta(days=7)


class PodUnknown(CsrRejected):
    """No such pod was reported (yet): the runtime may retry after its next report."""


def sign_pod_csr(
    ca: CertificateAuthority,
    pods: RuntimeView,
    *,
    namespace: str,
    pod: str,
    identity: str,
    csr_pem: str,
    ttl_seconds: float,
) -> str:
    status = pods.find(namespace, pod)
    if status is None or status.phase == "Terminating":
        raise PodUnknown(f"pod {namespace}/{pod} is not a running pod the runtime reported")
    # In the mesh's current trust domain (the CA follows the mesh config's trustDomain).
    entitled = ca.trust.spiffe_id(status.namespace, status.service_account)
    if identity != entitled:
        raise CsrRejected(f"pod {namespace}/{pod} runs as {entitled!r}, not {identity!r}")
    ttl = timedelta(seconds=ttl_seconds)
    if not timedelta(0) < ttl <= MAX_REQUESTED_TTL:
        raise CsrRejected(f"invalid certificate TTL {ttl}")
    return ca.sign_csr(csr_pem, entitled, ttl)
