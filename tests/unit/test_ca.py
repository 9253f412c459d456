"""The mesh CA: root persistence, workload certificates (chain, SPIFFE SAN, usages), CSR checks."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from gossamer.mesh import spiffe_id
from gossamer.security import CertificateAuthority, CsrRejected

IDENTITY = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"


def make_csr(*uris: str, dns: tuple[str, ...] = ()) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    csr = builder.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "ca")


def test_spiffe_id() -> None:
    assert spiffe_id("default", "bookinfo-reviews") == IDENTITY


def test_root_is_a_self_signed_ca(ca: CertificateAuthority) -> None:
    root = x509.load_pem_x509_certificate(ca.root_pem.encode())
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Gossamer root CA"
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cluster.local"
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.not_valid_after_utc - root.not_valid_before_utc > timedelta(days=3600)
    root.verify_directly_issued_by(root)
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600


def test_issue_and_verify_chain(ca: CertificateAuthority) -> None:
    key, csr = make_csr(IDENTITY)
    before = datetime.now(UTC)
    leaf = x509.load_pem_x509_certificate(ca.sign_csr(csr, IDENTITY).encode())
    root = x509.load_pem_x509_certificate(ca.root_pem.encode())
    leaf.verify_directly_issued_by(root)
    assert leaf.public_key() == key.public_key()
    # The URI SAN is the SPIFFE id, and the only name.
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [IDENTITY]
    assert san.critical
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # 24 h by default, backdated a little.
    assert leaf.not_valid_before_utc < before
    assert before - leaf.not_valid_before_utc <= timedelta(minutes=5)
    assert abs(leaf.not_valid_after_utc - (before + timedelta(hours=24))) < timedelta(minutes=1)
    # A full path validation (what a TLS peer does), as a client certificate.
    verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
    verified = verifier.verify(leaf, [])
    assert verified.subjects is not None and x509.UniformResourceIdentifier(IDENTITY) in verified.subjects


def test_ttl(ca: CertificateAuthority) -> None:
    _, csr = make_csr(IDENTITY)
    leaf = x509.load_pem_x509_certificate(ca.sign_csr(csr, IDENTITY, timedelta(seconds=30)).encode())
    assert abs(leaf.not_valid_after_utc - (datetime.now(UTC) + timedelta(seconds=30))) < timedelta(seconds=5)
    leaf2 = x509.load_pem_x509_certificate(ca.sign_csr(csr, IDENTITY, timedelta(seconds=30)).encode())
    assert leaf2.serial_number != leaf.serial_number
    with pytest.raises(CsrRejected):
        ca.sign_csr(csr, IDENTITY, timedelta(0))


@pytest.mark.parametrize(
    ("uris", "dns"),
    [
        (("spiffe://cluster.local/ns/default/sa/other",), ()),  # another identity
        ((IDENTITY, "spiffe://cluster.local/ns/default/sa/other"), ()),  # one more identity
        ((IDENTITY,), ("reviews.default.svc",)),  # extra DNS name
        ((), ()),  # no SAN at all
    ],
)
def test_refuses_csr_for_another_identity(
    ca: CertificateAuthority, uris: tuple[str, ...], dns: tuple[str, ...]
) -> None:
    _, csr = make_csr(*uris, dns=dns)
    with pytest.raises(CsrRejected):
        ca.sign_csr(csr, IDENTITY)


def test_refuses_identity_outside_trust_domain(ca: CertificateAuthority) -> None:
    other = "spiffe://evil.example/ns/default/sa/x"
    _, csr = make_csr(other)
    with pytest.raises(CsrRejected):
        ca.sign_csr(csr, other)


def test_refuses_garbage(ca: CertificateAuthority) -> None:
    with pytest.raises(CsrRejected):
        ca.sign_csr("not a csr", IDENTITY)


def test_root_survives_restart(tmp_path: Path) -> None:
    first = CertificateAuthority(tmp_path / "ca")
    _, csr = make_csr(IDENTITY)
    leaf = x509.load_pem_x509_certificate(first.sign_csr(csr, IDENTITY).encode())
    second = CertificateAuthority(tmp_path / "ca")
    assert second.root_pem == first.root_pem
    # Certificates from before the restart still chain to the (same) root; new ones too.
    root = x509.load_pem_x509_certificate(second.root_pem.encode())
    leaf.verify_directly_issued_by(root)
    x509.load_pem_x509_certificate(second.sign_csr(csr, IDENTITY).encode()).verify_directly_issued_by(root)
    # Another state dir: another root.
    assert CertificateAuthority(tmp_path / "other").root_pem != first.root_pem


def test_mismatched_root_files_are_an_error(tmp_path: Path) -> None:
    CertificateAuthority(tmp_path / "a")
    CertificateAuthority(tmp_path / "b")
    (tmp_path / "a" / "root-cert.pem").write_bytes((tmp_path / "b" / "root-cert.pem").read_bytes())
    with pytest.raises(ValueError, match="does not match"):
        CertificateAuthority(tmp_path / "a")
