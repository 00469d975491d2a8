"""Real registries for integration tests: the CNCF distribution registry (Debian's
``docker-registry``), started on 127.0.0.1 with temporary storage, plus what the variants need:
a CA and server certificates, an htpasswd file, a bearer-token server issuing signed JWTs, and a
loopback HTTP proxy that injects faults the real registry cannot produce.

Everything listens on the loopback interface only, and every server stops at teardown.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REGISTRY_BIN = shutil.which("docker-registry")
SKOPEO_BIN = shutil.which("skopeo")

needs_registry = pytest.mark.skipif(
    REGISTRY_BIN is None, reason="docker-registry (CNCF distribution) is not installed"
)
needs_skopeo = pytest.mark.skipif(SKOPEO_BIN is None, reason="skopeo is not installed")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- the registry ------------------------------------------------------------------------------
@dataclass
class RunningRegistry:
    """A distribution registry process and where it keeps its data."""

    host: str
    scheme: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def blob_data(self, digest: str) -> Path:
        """Where the registry stores a blob's bytes."""
        algo, hexpart = digest.split(":")
        return self.root / "docker/registry/v2/blobs" / algo / hexpart[:2] / hexpart / "data"

    def layer_link(self, repository: str, digest: str) -> Path:
        """The link that makes a blob part of a repository (made by an upload or a mount)."""
        algo, hexpart = digest.split(":")
        return (
            self.root
            / "docker/registry/v2/repositories"
            / repository
            / "_layers"
            / algo
            / hexpart
            / "link"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_registry(
    workdir: Path,
    *,
    tls: tuple[Path, Path] | None = None,
    client_cas: tuple[Path, ...] = (),
    auth: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
) -> RunningRegistry:
    """Start ``docker-registry serve`` with storage under ``workdir``; wait until it answers."""
    assert REGISTRY_BIN is not None
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    root = workdir / "storage"
    http_cfg: dict[str, Any] = {"addr": f"{host}:{port}", "secret": secrets.token_hex(16)}
    if tls is not None:
        http_cfg["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        if client_cas:
            http_cfg["tls"]["clientcas"] = [str(p) for p in client_cas]
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http_cfg,
    }
    if auth is not None:
        config["auth"] = auth
    # YAML is a superset of JSON, so the registry reads this as it is.
    cfg_path = workdir / "config.yml"
    cfg_path.write_text(json.dumps(config, indent=2))
    log = workdir / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(cfg_path)], stdout=out, stderr=subprocess.STDOUT
        )
    scheme = "https" if tls else "http"
    reg = RunningRegistry(f"{host}:{port}", scheme, root, log, process)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            if client_cas:
                # Without a client certificate the handshake fails: a listening port will do.
                socket.create_connection((host, port), timeout=2).close()
                return reg
            r = httpx.get(f"{reg.url}/v2/", verify=False, timeout=2)
            if r.status_code in (200, 401):
                return reg
        except (httpx.TransportError, OSError):
            pass
        if time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A plain-http registry with deletion enabled, shared by the session."""
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry (CNCF distribution) is not installed")
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        reg.stop()


# -- certificates ------------------------------------------------------------------------------
@dataclass
class CertificateAuthority:
    """A CA made for one test session, able to issue server and signing certificates."""

    cert_pem: bytes
    key: Any
    cert: Any

    @classmethod
    def create(cls, name: str = "imagetypes test CA") -> CertificateAuthority:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert.public_bytes(serialization.Encoding.PEM), key, cert)

    def issue_server(
        self,
        directory: Path,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        *,
        client: bool = False,
        stem: str = "server",
    ) -> tuple[Path, Path]:
        """Write a server (or, with ``client``, a client) certificate and key; return paths."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{stem}.cert"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """An htpasswd file with bcrypt hashes, as the registry's htpasswd auth reads."""
    import bcrypt

    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}"
        for user, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- a bearer token server ---------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    """What the token server was asked for."""

    method: str
    account: str | None
    scopes: list[str]
    grant_type: str | None


@dataclass
class TokenServer:
    """Issues RS256 JWTs the registry accepts (its signing certificate in ``x5c``).

    ``users`` maps names to passwords; ``refresh_tokens`` maps OAuth2 refresh (identity)
    tokens to names. Authenticated users get every action they ask for, except on the
    repositories ``denied`` lists for them (nothing there, as a real token server grants only
    what it may); anonymous requests get ``pull`` only when ``anonymous_pull`` is set.
    """

    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    anonymous_pull: bool = False
    denied: dict[str, set[str]] = field(default_factory=dict)
    service: str = "imagetypes-test-registry"
    issuer: str = "imagetypes-test-issuer"
    lifetime: int = 300
    requests: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = self.workdir / "token-signer.pem"
        self.rootcertbundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                account = server._basic_user(self.headers.get("Authorization"))
                scopes = query.get("scope", [])
                server.requests.append(TokenRequest("GET", account, scopes, None))
                if account == "":
                    self._send(
                        401,
                        {
                            "errors": [
                                {"code": "UNAUTHORIZED", "message": "invalid user name or password"}
                            ]
                        },
                    )
                    return
                self._send(200, {"token": server.issue(account, scopes)})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                scopes = form.get("scope", [""])[0].split()
                refresh = form.get("refresh_token", [""])[0]
                account = server.refresh_tokens.get(refresh)
                server.requests.append(TokenRequest("POST", account, scopes, grant))
                if grant != "refresh_token" or account is None:
                    self._send(
                        400,
                        {"error": "invalid_grant", "error_description": "unknown refresh token"},
                    )
                    return
                token = server.issue(account, scopes)
                self._send(200, {"access_token": token, "expires_in": server.lifetime})

            def _send(self, status: int, obj: object) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = _QuietServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _basic_user(self, header: str | None) -> str | None:
        """The authenticated user; ``""`` for wrong credentials; ``None`` for anonymous."""
        if not header or not header.lower().startswith("basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else ""

    def issue(self, account: str | None, scopes: list[str]) -> str:
        """A signed JWT granting ``scopes`` (pull only for anonymous, when allowed)."""
        access = []
        for scope in scopes:
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if account is None:
                wanted = ["pull"] if self.anonymous_pull and "pull" in wanted else []
            elif name in self.denied.get(account, set()):
                wanted = []
            access.append({"type": typ, "name": name, "actions": wanted})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def registry_auth_config(self) -> dict[str, Any]:
        """The registry's ``auth:`` section trusting this server."""
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.rootcertbundle),
            }
        }

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _QuietServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that does not print the connection resets tests cause."""

    daemon_threads = True
    request_queue_size = 64  # socketserver's 5 resets bursts of parallel clients

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


# -- a fault-injecting proxy -------------------------------------------------------------------
@dataclass
class Fault:
    """What the proxy does to the next request matching ``method`` and ``path_contains``.

    ``action``: ``"status"`` (answer ``status`` with ``headers`` without forwarding),
    ``"cut"`` (forward, then send only ``after`` bytes of the body and close the connection),
    ``"corrupt"`` (forward, flip one byte of the body), ``"redirect"`` (answer 307 to
    ``location`` + the original path), ``"drop"`` (forward, then close the connection without
    answering). ``times`` is how many matching requests it applies to.
    """

    method: str
    path_contains: str
    action: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    location: str = ""
    times: int = 1


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    time: float


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of a plain-http registry, injecting :class:`Fault`s.

    Every request it sees is recorded in :attr:`seen`.
    """

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        self.upstream = upstream  # HOST:PORT of the registry
        self.faults: list[Fault] = []
        self.seen: list[SeenRequest] = []
        self._lock = threading.Lock()
        self.port = free_port(host)
        self.host = f"{host}:{self.port}"
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                proxy.seen.append(SeenRequest(self.command, self.path, headers, time.monotonic()))
                fault = proxy._take(self.command, self.path)
                if fault is not None and fault.action == "status":
                    self.send_response(fault.status)
                    for k, v in fault.headers.items():
                        self.send_header(k, v)
                    payload = json.dumps(
                        {"errors": [{"code": "UNKNOWN", "message": "injected fault"}]}
                    ).encode()
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if fault is not None and fault.action == "redirect":
                    self.send_response(307)
                    self.send_header("Location", fault.location + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    upstream = conn.getresponse()
                    data = upstream.read()
                    if fault is not None and fault.action == "drop":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.send_response(upstream.status)
                    for k, v in upstream.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    # A HEAD answer has no body but tells the length the registry gave.
                    length = str(len(data))
                    if self.command == "HEAD":
                        length = upstream.getheader("Content-Length") or length
                    self.send_header("Content-Length", length)
                    if fault is not None and fault.action == "cut":
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(data[: fault.after])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if fault is not None and fault.action == "corrupt" and data:
                        mid = len(data) // 2
                        data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self._httpd = _QuietServer((host, self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path_contains in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class RecordingServer:
    """A plain HTTP server that serves fixed bodies by path and records request headers:
    stands for the object storage a registry redirects blob downloads to."""

    def __init__(self, host: str, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.seen: list[SeenRequest] = []
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.seen.append(
                    SeenRequest("GET", self.path, dict(self.headers.items()), time.monotonic())
                )
                path = urllib.parse.urlsplit(self.path).path
                body = server.bodies.get(path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self._httpd = _QuietServer((host, self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def counting_hooks() -> tuple[dict[str, list[Callable[..., Any]]], list[tuple[str, str]]]:
    """httpx event hooks that record (method, path) of every request sent."""
    sent: list[tuple[str, str]] = []

    def on_request(request: httpx.Request) -> None:
        sent.append((request.method, request.url.path))

    return {"request": [on_request]}, sent


def environ_without_proxies() -> dict[str, str]:
    """The environment for peer tools, without proxy settings that would divert loopback."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


@pytest.fixture
def proxy(registry: RunningRegistry) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of the session registry, stopped after the test."""
    p = FaultProxy(registry.host)
    try:
        yield p
    finally:
        p.stop()
