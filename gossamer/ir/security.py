"""IR for mTLS (PeerAuthentication, DestinationRule tls, auto mTLS) and end-user authentication
(RequestAuthentication); authorization is `ir/authorization.py`. Plain frozen dataclasses like the
rest of the IR.

Secrets are never in the IR: the builder refers to Istio's SDS names (`default` for the
workload certificate, `ROOTCA` for the trust bundle) served by the agent on cluster `sds-grpc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Istio's ALPN values for mesh mTLS: clients offer them, servers' mTLS chains match them.
ISTIO_ALPN_CLIENT: tuple[str, ...] = ("istio-peer-exchange", "istio")
ISTIO_ALPN_SERVER: tuple[str, ...] = ("istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2")

UpstreamTlsMode = Literal["ISTIO_MUTUAL", "SIMPLE", "MUTUAL"]
# "" is plaintext only (DISABLE, or a proxy without SDS).
InboundMtls = Literal["", "STRICT", "PERMISSIVE"]


@dataclass(frozen=True)
class UpstreamTls:
    """TLS a client proxy originates to a cluster's endpoints.

    ISTIO_MUTUAL: the workload certificate over SDS, peers verified against ROOTCA and (when
    known) the destination's SPIFFE ids. SIMPLE / MUTUAL: files from the DestinationRule."""

    mode: UpstreamTlsMode
    sni: str = ""
    subject_alt_names: tuple[str, ...] = ()  # exact URI/DNS SANs the server must present
    trust_domain: str = ""  # ISTIO_MUTUAL without SANs: any identity of this trust domain
    alpn: tuple[str, ...] = ()
    ca_certificates: str = ""
    client_certificate: str = ""
    private_key: str = ""
    insecure_skip_verify: bool = False


# ------------------------------------------------------------------------------------ JWT (RequestAuthentication)


@dataclass(frozen=True)
class JwtHeader:
    """A header carrying the token; `prefix` is stripped first ("Bearer ")."""

    name: str
    prefix: str = ""


@dataclass(frozen=True)
class JwtProvider:
    """One RequestAuthentication jwtRules entry as it applies to one workload.

    Keys: `jwks` (inline JSON) or, for a jwksUri served by a mesh service, `jwks_cluster` (its
    outbound cluster) with `jwks_uri`. A provider with neither verifies no token (Istio's fake
    JWKS when the keys cannot be fetched): tokens of its issuer are rejected."""

    name: str
    issuer: str
    source: str = ""  # "<namespace>/<name>" of the RequestAuthentication
    audiences: tuple[str, ...] = ()
    jwks: str = ""
    jwks_uri: str = ""
    jwks_cluster: str = ""
    jwks_timeout_seconds: float = 5.0
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str = ""
    claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, claim)
