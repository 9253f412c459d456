"""Who may have which identity: the rules the control plane applies before it signs or serves.

* **CSR** (`pod_identity`, `sign_for_pod`): the runtime (the kubelet; root, over the root-only API
  socket) asks for a certificate *for a pod*. The identity is derived from what the control plane
  knows of that pod — its namespace and service account — never from what the request claims: an
  unknown or terminating pod gets nothing, and the CSR must ask for exactly that identity.
* **xDS** (`peer_identity`, `check_node`): a proxy's stream is served only if the SPIFFE id of the
  client certificate it presented (verified by the TLS handshake against the mesh root) names the
  namespace and service account its node metadata claims. Everything the proxy then receives is
  translated for that proven namespace, so gateway Secrets (`credentialName`, looked up in the
  gateway workload's namespace) reach only proxies proven to live there — Istio's rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Protocol

from cryptography import x509

from gossamer.mesh import DEFAULT_TRUST_DOMAINS, TrustDomains
from gossamer.security.ca import CsrRejected


class IdentityRejected(PermissionError):
    """The client did not prove the identity it claims (or proved none)."""


class PodRecord(Protocol):
    """What the rule needs of a pod (runtime.types.PodStatus is one)."""

    name: str
    namespace: str
    service_account: str
    phase: str


class Signer(Protocol):
    def sign_csr(self, csr_pem: str, identity: str, ttl: timedelta | None = None) -> str: ...


def pod_identity(
    pods: Iterable[PodRecord], namespace: str, pod: str, trust: TrustDomains = DEFAULT_TRUST_DOMAINS
) -> str:
    """The SPIFFE id of pod `namespace/pod` (in the trust domain), from the pods the control plane
    knows; CsrRejected if none."""
    for p in pods:
        if p.namespace == namespace and p.name == pod:
            if p.phase == "Terminating":
                raise CsrRejected(f"pod {namespace}/{pod} is terminating")
            return trust.spiffe_id(p.namespace, p.service_account)
    raise CsrRejected(f"no pod {namespace}/{pod}: certificates are signed only for running pods")


def sign_for_pod(
    signer: Signer,
    pods: Iterable[PodRecord],
    namespace: str,
    pod: str,
    csr_pem: str,
    ttl: timedelta | None = None,
    trust: TrustDomains = DEFAULT_TRUST_DOMAINS,
) -> str:
    """Sign `csr_pem` for the pod's own identity (the CSR must ask for exactly that)."""
    return signer.sign_csr(csr_pem, pod_identity(pods, namespace, pod, trust), ttl)


def uri_sans(cert_pem: bytes | str) -> list[str]:
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    cert = x509.load_pem_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def peer_identity(context: Any, trust: TrustDomains = DEFAULT_TRUST_DOMAINS) -> str:
    """The SPIFFE id of the verified client certificate of a gRPC call; IdentityRejected without one.

    gRPC only exposes `x509_pem_cert` for a peer whose chain verified against the server's trusted
    roots (`require_client_auth=True`), so the certificate is proven, not claimed."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise IdentityRejected("no verified client certificate: connect with the workload certificate (mTLS)")
    ids = [u for u in uri_sans(pems[0]) if trust.accepts(u)]
    if len(ids) != 1:
        domains = " or ".join(trust.all)
        raise IdentityRejected(f"the client certificate carries no single SPIFFE id of trust domain {domains}")
    return ids[0]


def check_node(identity: str, metadata: dict[str, Any], trust: TrustDomains = DEFAULT_TRUST_DOMAINS) -> None:
    """The node's claimed NAMESPACE and SERVICE_ACCOUNT must be exactly the proven identity's (in the
    trust domain or one of its aliases: the same workload, as Istio treats them)."""
    namespace = str(metadata.get("NAMESPACE") or "")
    account = str(metadata.get("SERVICE_ACCOUNT") or "")
    if not namespace or not account:
        raise IdentityRejected("node metadata must name NAMESPACE and SERVICE_ACCOUNT")
    if identity not in trust.identities(namespace, account):
        raise IdentityRejected(f"node claims {trust.spiffe_id(namespace, account)} but proved {identity}")
