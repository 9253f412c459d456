"""The mesh CA: a self-signed root that signs workload certificates (istiod's built-in CA).

The root (EC P-256, 10 years, CN "Gossamer root CA", O = the trust domain it was made in) lives
in `<state>/ca/root-key.pem` (0600) and `root-cert.pem`, so a restarted control plane keeps
the same root and the certificates it already issued stay valid.

Workload certificates are Istio's: no subject, a critical URI SAN with the SPIFFE id
`spiffe://<trust domain>/ns/<ns>/sa/<sa>`, not a CA, digitalSignature + keyEncipherment,
serverAuth + clientAuth, 24 h by default, backdated a little for clock skew. A CSR is
signed only when its SANs are exactly the identity the caller is entitled to, in the current
trust domain (`set_trust`: the control plane follows the mesh config's `trustDomain` live; the
root stays, so a new trust domain needs no new root).
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gossamer.mesh import TRUST_DOMAIN, TrustDomains, spiffe_prefix

ROOT_COMMON_NAME = "Gossamer root CA"
ROOT_TTL = timedelta(days=3650)
DEFAULT_CERT_TTL = timedelta(hours=24)
MAX_CERT_TTL = timedelta(days=90)
# Istio backdates workload certificates so that a peer whose clock is a little behind accepts them.
BACKDATE = timedelta(minutes=1)
ROOT_KEY_FILE = "root-key.pem"
ROOT_CERT_FILE = "root-cert.pem"


class CsrRejected(ValueError):
    """The CSR is malformed, badly signed, or asks for an identity the caller may not have."""


def _now() -> datetime:
    return datetime.now(UTC)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (tmp + rename) with `mode` from the start (never readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class CertificateAuthority:
    """Self-signed root CA persisted in `directory`; thread-safe `sign_csr`."""

    def __init__(
        self,
        directory: Path,
        *,
        trust_domain: str = TRUST_DOMAIN,
        default_ttl: timedelta = DEFAULT_CERT_TTL,
        max_ttl: timedelta = MAX_CERT_TTL,
    ) -> None:
        self.directory = Path(directory)
        self.trust = TrustDomains(trust_domain)
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self._lock = threading.Lock()
        self._key, self._cert = self._load_or_create()
        self.root_pem: str = self._cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def trust_domain(self) -> str:
        return self.trust.domain

    def set_trust(self, trust: TrustDomains) -> None:
        """The mesh config's trust domain (and aliases): workload certificates are signed in it from now on."""
        self.trust = trust

    # ---- root --------------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return self.directory / ROOT_KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / ROOT_CERT_FILE

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._cert

    def _load_or_create(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if self.key_path.exists() and self.cert_path.exists():
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.key_path}: the root key is not an EC key")
            if cert.public_key() != key.public_key():
                raise ValueError(f"{self.cert_path} does not match {self.key_path}")
            return key, cert
        # Nothing was ever signed with a half-written root (a crash between the two renames):
        # make a new one.
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._self_signed(key)
        _write_private(
            self.key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            0o600,
        )
        _write_private(self.cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return key, cert

    def _self_signed(self, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, ROOT_COMMON_NAME),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + ROOT_TTL)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )

    # ---- signing -----------------------------------------------------------------------

    def check_identity(self, identity: str) -> None:
        prefix = spiffe_prefix(self.trust_domain)
        if not identity.startswith(prefix) or len(identity) == len(prefix):
            raise CsrRejected(f"identity {identity!r} is not a SPIFFE id in trust domain {self.trust_domain}")

    def issue_server_certificate(self, dns_name: str, ttl: timedelta) -> tuple[str, str]:
        """(certificate PEM, key PEM) for the control plane's own TLS server: a DNS SAN only
        (`istiod.istio-system.svc`), which no workload certificate can carry (sign_csr signs one
        URI SAN and nothing else), serverAuth only."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + ttl, self._cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=True)
        )
        with self._lock:
            cert = builder.sign(self._key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem

    def sign_csr(self, csr_pem: str | bytes, identity: str, ttl: timedelta | None = None) -> str:
        """Sign `csr_pem` for `identity` (the SPIFFE id the caller is entitled to); returns the leaf PEM.

        Raises CsrRejected unless the CSR is well signed and its SANs are exactly one URI,
        equal to `identity`.
        """
        self.check_identity(identity)
        data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError as e:
            raise CsrRejected(f"not a PEM certificate request: {e}") from None
        if not csr.is_signature_valid:
            raise CsrRejected("the CSR's signature does not verify")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise CsrRejected("the CSR has no subjectAltName (expected the SPIFFE id)") from None
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        if uris != [identity] or len(list(san)) != 1:
            names = [str(getattr(n, "value", n)) for n in san]
            raise CsrRejected(f"the CSR asks for {names}, but the caller may only have {identity!r}")
        lifetime = self.default_ttl if ttl is None else ttl
        if lifetime <= timedelta(0):
            raise CsrRejected(f"invalid certificate TTL {lifetime}")
        lifetime = min(lifetime, self.max_ttl)
        now = _now()
        not_after = min(now + lifetime, self._cert.not_valid_after_utc)
        public_key = csr.public_key()
        if not isinstance(public_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
            raise CsrRejected("unsupported public key type in the CSR (want EC or RSA)")
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
            raise CsrRejected("RSA keys must have at least 2048 bits")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            # An empty subject makes the SAN the certificate's only name: critical (RFC 5280 4.2.1.6).
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
        )
        with self._lock:
            cert = builder.sign(self._key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode()
