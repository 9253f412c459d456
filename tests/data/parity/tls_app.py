"""A TLS server for the gateway's TLS passthrough test: a fresh self-signed certificate for
tls.example.com (made at start, kept in a private temp dir), answering each handshake with
"tls-app <SNI>"."""

import datetime
import os
import socket
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "tls.example.com"
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
now = datetime.datetime.now(datetime.UTC)
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(minutes=1))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
    .sign(key, hashes.SHA256())
)
folder = tempfile.mkdtemp()
cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
with open(cert_path, "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
with open(key_path, "wb") as f:
    f.write(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert_path, key_path)
seen: dict[str, str | None] = {}
ctx.sni_callback = lambda sock, server_name, _ctx: seen.__setitem__("sni", server_name)
server = socket.create_server(("0.0.0.0", 8443))
print("listening on 8443", flush=True)
while True:
    conn, _ = server.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(f"tls-app {seen.get('sni')}\n".encode())
    except (OSError, ssl.SSLError):
        pass
