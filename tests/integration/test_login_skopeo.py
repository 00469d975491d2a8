"""Login, logout and auth files against skopeo and real registries (htpasswd basic auth, and a
bearer token server): what skopeo login writes we read, what we write skopeo reads, byte for
byte the same file, and logout leaves nothing usable behind."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from authkit import isolate_auth_files, needs_wiring, skopeo
from imagebuilder import make_image, write_oci_layout
from registry_fixtures import (
    REGISTRY_BIN,
    SKOPEO_BIN,
    RunningRegistry,
    TokenServer,
    environ_without_proxies,
    start_registry,
    write_htpasswd,
)

from imagetypes import Credentials, TransportOptions
from imagetypes.cli import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed"),
    pytest.mark.skipif(SKOPEO_BIN is None, reason="skopeo is not installed"),
]

USER, PASSWORD = "alice", "pw:with:colons"
TOKEN_USER, TOKEN_PASSWORD = "bob", "t0ken-pass"
REFRESH_TOKEN = "refresh-token-for-bob"


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_auth_files(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    work = tmp_path_factory.mktemp("login-basic-registry")
    htpasswd = write_htpasswd(work / "htpasswd", {USER: PASSWORD})
    reg = start_registry(
        work, auth={"htpasswd": {"realm": "imagetypes-login", "path": str(htpasswd)}}
    )
    try:
        seed(reg, f"--dest-creds={USER}:{PASSWORD}", "login/img:v1", 71)
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(
        tmp_path_factory.mktemp("login-token-server"),
        users={TOKEN_USER: TOKEN_PASSWORD},
        refresh_tokens={REFRESH_TOKEN: TOKEN_USER},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[RunningRegistry]:
    reg = start_registry(
        tmp_path_factory.mktemp("login-token-registry"), auth=token_server.registry_auth_config()
    )
    try:
        seed(reg, f"--dest-creds={TOKEN_USER}:{TOKEN_PASSWORD}", "tok/img:v1", 72)
        yield reg
    finally:
        reg.stop()


# -- helpers -------------------------------------------------------------------------------------
def seed(reg: RunningRegistry, creds_flag: str, name: str, seed_value: int) -> None:
    """Push an image with skopeo (independent of our push code)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        layout = write_oci_layout(Path(d) / "layout", {"t": make_image(seed_value)})
        policy = Path(d) / "policy.json"
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        skopeo(
            "--policy",
            str(policy),
            "copy",
            "--dest-tls-verify=false",
            creds_flag,
            f"oci:{layout}:t",
            f"docker://{reg.host}/{name}",
        )


def ours(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def skopeo_digest(host: str, name: str, *flags: str) -> str:
    done = skopeo("inspect", "--tls-verify=false", *flags, f"docker://{host}/{name}")
    digest: str = json.loads(done.stdout)["Digest"]
    return digest


# -- skopeo login -> us ----------------------------------------------------------------------------
def test_skopeo_login_is_read_by_find_credentials(
    basic_registry: RunningRegistry, tmp_path: Path
) -> None:
    from imagetypes_transports.docker._authfile import find_credentials, lookup_credentials

    authfile = tmp_path / "skopeo-auth.json"
    host = basic_registry.host
    skopeo(
        "login", "--tls-verify=false", "--authfile", str(authfile), "-u", USER, "-p", PASSWORD, host
    )
    options = TransportOptions(authfile=str(authfile))
    assert find_credentials(host, "login/img", options) == Credentials(USER, PASSWORD)
    entry = lookup_credentials(host, None, authfile)
    assert entry is not None
    assert entry.source == str(authfile)
    # A namespaced login (skopeo accepts one) is preferred for that namespace only.
    skopeo(
        "login",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        "-u",
        USER,
        "-p",
        PASSWORD,
        f"{host}/login",
    )
    data = json.loads(authfile.read_text())
    assert set(data["auths"]) == {host, f"{host}/login"}
    assert find_credentials(host, "login/img", options) == Credentials(USER, PASSWORD)


@needs_wiring
def test_imagetypes_inspect_uses_skopeo_login(
    basic_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authfile = tmp_path / "auth.json"
    host = basic_registry.host
    skopeo(
        "login", "--tls-verify=false", "--authfile", str(authfile), "-u", USER, "-p", PASSWORD, host
    )
    code, out, err = ours(
        capsys,
        "inspect",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        f"docker://{host}/login/img:v1",
    )
    assert code == 0, err
    expected = skopeo_digest(host, "login/img:v1", f"--creds={USER}:{PASSWORD}")
    assert json.loads(out)["Digest"] == expected
    # Without the file there are no credentials, and the registry says no.
    code, _out, err = ours(capsys, "inspect", "--tls-verify=false", f"docker://{host}/login/img:v1")
    assert code == 1
    assert "UNAUTHORIZED" in err or "unauthorized" in err.lower()
    # The default file (${XDG_RUNTIME_DIR}/containers/auth.json) is read without any flag.
    skopeo("login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, host)
    code, out, err = ours(capsys, "inspect", "--tls-verify=false", f"docker://{host}/login/img:v1")
    assert code == 0, err
    assert json.loads(out)["Digest"] == expected


# -- us -> skopeo ----------------------------------------------------------------------------------
def test_our_login_is_skopeos_file(
    basic_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = basic_registry.host
    ours_file = tmp_path / "ours" / "auth.json"
    theirs_file = tmp_path / "theirs" / "auth.json"
    code, out, err = ours(
        capsys,
        "login",
        "--tls-verify=false",
        "--authfile",
        str(ours_file),
        "-u",
        USER,
        "-p",
        PASSWORD,
        host,
    )
    assert (code, out) == (0, "Login Succeeded!\n"), err
    skopeo(
        "login",
        "--tls-verify=false",
        "--authfile",
        str(theirs_file),
        "-u",
        USER,
        "-p",
        PASSWORD,
        host,
    )
    assert ours_file.read_bytes() == theirs_file.read_bytes()
    assert (
        oct(ours_file.stat().st_mode & 0o777) == oct(theirs_file.stat().st_mode & 0o777) == "0o600"
    )
    # skopeo reads it: no credentials on its command line.
    expected = skopeo_digest(host, "login/img:v1", f"--creds={USER}:{PASSWORD}")
    assert skopeo_digest(host, "login/img:v1", "--authfile", str(ours_file)) == expected
    done = skopeo("login", "--get-login", "--authfile", str(ours_file), host)
    assert done.stdout == f"{USER}\n".encode()
    code, out, _err = ours(capsys, "login", "--get-login", "--authfile", str(ours_file), host)
    assert (code, out) == (0, f"{USER}\n")


def test_login_to_the_default_file_keeps_other_entries(
    basic_registry: RunningRegistry,
    isolated_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    default = tmp_path / "run" / "containers" / "auth.json"
    default.parent.mkdir(parents=True)
    other = {"auth": base64.b64encode(b"x:y").decode()}
    default.write_text(json.dumps({"auths": {"other.example": other}, "credHelpers": {}}))
    host = basic_registry.host
    code, out, err = ours(capsys, "login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, host)
    assert (code, out) == (0, "Login Succeeded!\n"), err
    data = json.loads(default.read_text())
    assert data["auths"]["other.example"] == other
    assert host in data["auths"]
    # skopeo finds it in the same default place.
    assert skopeo("login", "--get-login", host).stdout == f"{USER}\n".encode()
    # Logging in again with no user or password checks the stored ones.
    code, out, err = ours(capsys, "login", "--tls-verify=false", host)
    assert code == 0, err
    assert out == (
        f"Authenticating with existing credentials for {host}\n"
        f"Existing credentials are valid. Already logged in to {host}\n"
    )


def test_password_stdin(
    basic_registry: RunningRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authfile = tmp_path / "auth.json"
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    code, out, err = ours(
        capsys,
        "login",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        "-u",
        USER,
        "--password-stdin",
        basic_registry.host,
    )
    assert (code, out) == (0, "Login Succeeded!\n"), err
    assert (
        skopeo("login", "--get-login", "--authfile", str(authfile), basic_registry.host).stdout
        == b"alice\n"
    )


def test_wrong_password_is_refused_and_nothing_stored(
    basic_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authfile = tmp_path / "auth.json"
    host = basic_registry.host
    code, out, err = ours(
        capsys,
        "login",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        "-u",
        USER,
        "-p",
        "WRONG-pw-9",
        host,
    )
    assert code == 1
    assert out == ""
    assert err == f'imagetypes: error: logging into "{host}": invalid username/password\n'
    assert "WRONG-pw-9" not in err
    assert not authfile.exists()
    # skopeo says the same.
    theirs = skopeo(
        "login",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        "-u",
        USER,
        "-p",
        "WRONG-pw-9",
        host,
        check=False,
    )
    assert theirs.returncode != 0
    assert f'logging into \\"{host}\\": invalid username/password' in theirs.stderr.decode()


def test_tls_verify_is_the_default_for_login(
    basic_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The registry speaks plain http: without --tls-verify=false, login must not fall back to it.
    authfile = tmp_path / "auth.json"
    code, _out, err = ours(
        capsys,
        "login",
        "--authfile",
        str(authfile),
        "-u",
        USER,
        "-p",
        PASSWORD,
        basic_registry.host,
    )
    assert code == 1
    assert "cannot reach registry" in err
    assert not authfile.exists()


# -- logout --------------------------------------------------------------------------------------
def test_logout_removes_what_skopeo_needs(
    basic_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = basic_registry.host
    authfile = tmp_path / "auth.json"
    skopeo(
        "login", "--tls-verify=false", "--authfile", str(authfile), "-u", USER, "-p", PASSWORD, host
    )
    skopeo_digest(host, "login/img:v1", "--authfile", str(authfile))  # works before logout
    code, out, err = ours(capsys, "logout", "--authfile", str(authfile), host)
    assert (code, out) == (0, f"Removed login credentials for {host}\n"), err
    assert json.loads(authfile.read_text()) == {"auths": {}}
    denied = skopeo(
        "inspect",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        f"docker://{host}/login/img:v1",
        check=False,
    )
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.decode().lower()
    assert (
        skopeo("login", "--get-login", "--authfile", str(authfile), host, check=False).returncode
        != 0
    )
    # Logging out twice is an error, as with skopeo.
    code, _out, err = ours(capsys, "logout", "--authfile", str(authfile), host)
    assert (code, err) == (1, f"imagetypes: error: not logged into {host}\n")
    assert skopeo("logout", "--authfile", str(authfile), host, check=False).returncode != 0


def test_skopeo_logout_of_our_login(
    basic_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imagetypes_transports.docker._authfile import find_credentials

    host = basic_registry.host
    authfile = tmp_path / "auth.json"
    assert (
        main(
            [
                "login",
                "--tls-verify=false",
                "--authfile",
                str(authfile),
                "-u",
                USER,
                "-p",
                PASSWORD,
                host,
            ]
        )
        == 0
    )
    assert skopeo("logout", "--authfile", str(authfile), host).stdout == (
        f"Removed login credentials for {host}\n".encode()
    )
    assert find_credentials(host, "login/img", TransportOptions(authfile=str(authfile))) is None


# -- credential helpers through skopeo ------------------------------------------------------------
def test_credential_helper_shared_with_skopeo(
    basic_registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from imagetypes_transports.docker._authfile import find_credentials
    from tests.unit.test_authfile import HELPER

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "docker-credential-test"
    program.write_text(HELPER.format(python=sys.executable))
    program.chmod(0o755)
    store = tmp_path / "store.json"
    monkeypatch.setenv("TEST_HELPER_STORE", str(store))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    host = basic_registry.host
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {}, "credHelpers": {host: "test"}}))
    skopeo(
        "login", "--tls-verify=false", "--authfile", str(authfile), "-u", USER, "-p", PASSWORD, host
    )
    assert json.loads(store.read_text()) == {host: [USER, PASSWORD]}
    assert find_credentials(host, "x", TransportOptions(authfile=str(authfile))) == Credentials(
        USER, PASSWORD
    )
    # Our logout erases it from the helper, as skopeo's would.
    code, out, err = ours(capsys, "logout", "--authfile", str(authfile), host)
    assert (code, out) == (0, f"Removed login credentials for {host}\n"), err
    assert json.loads(store.read_text()) == {}
    # Our login stores through the helper; skopeo reads it back through the helper.
    code, out, err = ours(
        capsys,
        "login",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        "-u",
        USER,
        "-p",
        PASSWORD,
        host,
    )
    assert (code, out) == (0, "Login Succeeded!\n"), err
    assert json.loads(store.read_text()) == {host: [USER, PASSWORD]}
    assert json.loads(authfile.read_text()) == {"auths": {}, "credHelpers": {host: "test"}}
    assert skopeo("login", "--get-login", "--authfile", str(authfile), host).stdout == b"alice\n"


# -- bearer tokens ---------------------------------------------------------------------------------
def test_login_with_a_token_server(
    token_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = token_registry.host
    authfile = tmp_path / "auth.json"
    code, out, err = ours(
        capsys,
        "login",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        "-u",
        TOKEN_USER,
        "-p",
        TOKEN_PASSWORD,
        host,
    )
    assert (code, out) == (0, "Login Succeeded!\n"), err
    expected = skopeo_digest(host, "tok/img:v1", f"--creds={TOKEN_USER}:{TOKEN_PASSWORD}")
    assert skopeo_digest(host, "tok/img:v1", "--authfile", str(authfile)) == expected
    code, _out, err = ours(
        capsys,
        "login",
        "--tls-verify=false",
        "--authfile",
        str(tmp_path / "bad.json"),
        "-u",
        TOKEN_USER,
        "-p",
        "nope",
        host,
    )
    assert (code, err) == (
        1,
        f'imagetypes: error: logging into "{host}": invalid username/password\n',
    )
    assert not (tmp_path / "bad.json").exists()


@needs_wiring
def test_identity_token_in_an_auth_file(
    token_registry: RunningRegistry,
    token_server: TokenServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = token_registry.host
    authfile = tmp_path / "auth.json"
    auth = base64.b64encode(f"{TOKEN_USER}:".encode()).decode()
    authfile.write_text(
        json.dumps({"auths": {host: {"auth": auth, "identitytoken": REFRESH_TOKEN}}})
    )
    # (skopeo would POST the refresh grant chunked, which the test token server cannot read,
    # so skopeo looks the digest up with the password instead.)
    expected = skopeo_digest(host, "tok/img:v1", f"--creds={TOKEN_USER}:{TOKEN_PASSWORD}")
    token_server.requests.clear()
    code, out, err = ours(
        capsys,
        "inspect",
        "--tls-verify=false",
        "--no-tags",
        "--authfile",
        str(authfile),
        f"docker://{host}/tok/img:v1",
    )
    assert code == 0, err
    assert json.loads(out)["Digest"] == expected
    assert token_server.requests
    assert {(r.method, r.grant_type) for r in token_server.requests} == {("POST", "refresh_token")}
    # skopeo login refuses to replace an identity token, and so do we.
    code, _out, err = ours(
        capsys,
        "login",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        "-u",
        "x",
        "-p",
        "y",
        host,
    )
    assert (code, err) == (
        1,
        "imagetypes: error: currently logged in, auth file contains an Identity token\n",
    )


# -- prompting on a terminal ---------------------------------------------------------------------
def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 30.0) -> None:
    import select
    import time

    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            chunk = b""
        assert chunk, f"EOF before {marker!r} in {bytes(seen)!r}"
        seen += chunk


def test_login_prompts_on_a_terminal(basic_registry: RunningRegistry, tmp_path: Path) -> None:
    import pty

    authfile = tmp_path / "auth.json"
    master, slave = pty.openpty()
    # A new session has no controlling terminal, so the prompts use the pty given as stdin.
    argv = ["login", "--tls-verify=false", "--authfile", str(authfile), basic_registry.host]
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagetypes", *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env=environ_without_proxies(),
    )
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"Username: ", seen)
        os.write(master, f"{USER}\n".encode())
        _read_until(master, b"Password: ", seen)
        os.write(master, f"{PASSWORD}\n".encode())
        _read_until(master, b"Login Succeeded!", seen)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert PASSWORD.encode() not in seen  # typed without echo
    assert skopeo(
        "login", "--get-login", "--authfile", str(authfile), basic_registry.host
    ).stdout == (f"{USER}\n".encode())


# -- TLS -----------------------------------------------------------------------------------------
def test_login_over_tls_with_cert_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from registry_fixtures import CertificateAuthority

    ca = CertificateAuthority.create()
    work = tmp_path / "tls-registry"
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD})
    reg = start_registry(
        work,
        tls=ca.issue_server(work / "certs"),
        auth={"htpasswd": {"realm": "tls", "path": str(htpasswd)}},
    )
    try:
        certs = tmp_path / "certs.d"
        certs.mkdir()
        (certs / "ca.crt").write_bytes(ca.cert_pem)
        authfile = tmp_path / "auth.json"
        argv = ["login", "--authfile", str(authfile), "-u", USER, "-p", PASSWORD, reg.host]
        # Not trusted without the CA, and never downgraded to http.
        code, _out, err = ours(capsys, *argv)
        assert code == 1
        assert "cannot reach registry" in err
        assert not authfile.exists()
        code, out, err = ours(capsys, "login", "--cert-dir", str(certs), *argv[1:])
        assert (code, out) == (0, "Login Succeeded!\n"), err
        # skopeo trusts the same folder and accepts the file.
        done = skopeo(
            "login", "--cert-dir", str(certs), "--get-login", "--authfile", str(authfile), reg.host
        )
        assert done.stdout == f"{USER}\n".encode()
        # --tls-verify=false skips verification (still over TLS).
        other = tmp_path / "other.json"
        code, out, err = ours(
            capsys, "login", "--tls-verify=false", "--authfile", str(other), *argv[3:]
        )
        assert (code, out) == (0, "Login Succeeded!\n"), err
    finally:
        reg.stop()
