"""A small HTTPS OIDC issuer that mints tokens shaped like the kubelet's.

It serves `/.well-known/openid-configuration` and a JWKS over TLS with its own test CA, and
mints service-account tokens (valid, expired, not yet valid, wrong audience, unknown key).
The JWKS carries the key as an `x5c` certificate as well as `n`/`e`, because Ceph RGW only
verifies signatures from `x5c` (and only uses the first key).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import ipaddress
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.bed.net import free_port

HOST = "127.0.0.1"
DEFAULT_AUDIENCE = "sts.amazonaws.com"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(
    cn: str,
    public_key: rsa.RSAPublicKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    san_ip: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(san_ip)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _b64u_int(i: int) -> str:
    return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


@dataclass
class SigningKey:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def kid(self) -> str:
        return self.thumbprint[:16]

    @property
    def thumbprint(self) -> str:
        return hashlib.sha1(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def jwk(self) -> dict[str, object]:
        numbers = self.key.public_key().public_numbers()
        der = self.cert.public_bytes(serialization.Encoding.DER)
        return {
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": _b64u_int(numbers.n), "e": _b64u_int(numbers.e),
            "x5c": [base64.b64encode(der).decode()],
        }


def _signing_key(name: str) -> SigningKey:
    key = _rsa_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sa-{name}")])
    return SigningKey(key, _cert(f"sa-{name}", key.public_key(), subject, key))


class Issuer:
    """HTTPS OIDC issuer on 127.0.0.1 with its own CA; start() serves in a daemon thread."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        ca_key = _rsa_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "litestream-supervisor test CA")])
        ca = _cert("litestream-supervisor test CA", ca_key.public_key(), ca_name, ca_key, ca=True)
        server_key = _rsa_key()
        server = _cert(HOST, server_key.public_key(), ca_name, ca_key, san_ip=HOST)
        self.ca_file = self.dir / "ca.crt"
        self.ca_file.write_bytes(_pem(ca))
        self._server_cert = self.dir / "server.crt"
        self._server_cert.write_bytes(_pem(server))
        self._server_key = self.dir / "server.key"
        self._server_key.write_bytes(
            server_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._server_key.chmod(0o600)
        self.signing = _signing_key("signing")
        self.unknown = _signing_key("unknown")
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self.minted: list[str] = []  # every token handed out, for the suite-wide secret scan

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def host_and_port(self) -> str:
        """The issuer as RGW names its OIDC provider (scheme stripped)."""
        return f"{HOST}:{self.port}"

    def discovery(self) -> dict[str, object]:
        return {
            "issuer": self.url,
            "jwks_uri": self.url + "/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def mint(
        self,
        *,
        audience: str = DEFAULT_AUDIENCE,
        namespace: str = "default",
        service_account: str = "app",
        ttl_seconds: int = 3600,
        issued_offset_seconds: int = 0,
        unknown_key: bool = False,
    ) -> str:
        """A token like the kubelet's projected service-account token."""
        now = int(time.time()) + issued_offset_seconds
        claims = {
            "iss": self.url,
            "aud": [audience],
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": "app-0", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
            },
        }
        key = self.unknown if unknown_key else self.signing
        token = jwt.encode(claims, key.key, algorithm="RS256", headers={"kid": key.kid})
        self.minted.append(token)
        return token

    def start(self) -> None:
        documents = {
            "/.well-known/openid-configuration": json.dumps(self.discovery()).encode(),
            "/openid/v1/jwks": json.dumps({"keys": [self.signing.jwk()]}).encode(),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = documents.get(self.path.split("?")[0])
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        httpd = http.server.ThreadingHTTPServer((HOST, self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self._server_cert, self._server_key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, name="oidc-issuer", daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
