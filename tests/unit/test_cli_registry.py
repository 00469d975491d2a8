"""The registry commands' flags (list-tags, delete, login, logout, copy's access flags) and what
login/logout do to auth files without a network; the real registry runs in
tests/integration/test_cli_registry.py and test_login_skopeo.py."""

from __future__ import annotations

import base64
import io
import json
import stat
from pathlib import Path

import pytest

from imagetypes import Credentials, RetryPolicy
from imagetypes.cli import _bare_bool_flags, _build_parser, _transport_options, main
from imagetypes.plugins import open_registry


def parse(*argv: str) -> object:
    return _build_parser().parse_args(_bare_bool_flags(list(argv)))


def options_for(*argv: str, prefix: str = "") -> object:
    return _transport_options(_build_parser().parse_args(_bare_bool_flags(list(argv))), prefix)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home and runtime dir of our own; returns the default auth file's path."""
    (tmp_path / "home").mkdir()
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    for name in ("XDG_CONFIG_HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "run" / "containers" / "auth.json"


# -- --tls-verify as skopeo parses it ------------------------------------------------------------
@pytest.mark.parametrize("command", ["list-tags", "delete", "inspect"])
@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (None, None),
        ("--tls-verify", True),
        ("--tls-verify=true", True),
        ("--tls-verify=false", False),
        ("--tls-verify=False", False),
        ("--tls-verify=0", False),
    ],
)
def test_tls_verify_flag(command: str, flag: str | None, expected: bool | None) -> None:
    argv = [command] + ([flag] if flag else []) + ["docker://localhost:5000/repo"]
    args = parse(*argv)
    assert args.image == "docker://localhost:5000/repo"  # type: ignore[attr-defined]
    assert _transport_options(args).tls_verify is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["login", "logout"])
def test_tls_verify_on_login_and_logout(command: str) -> None:
    assert parse(command, "--tls-verify=false", "h:1").tls_verify is False  # type: ignore[attr-defined]
    # A bare flag is true, and never swallows the registry that follows it.
    args = parse(command, "--tls-verify", "h:1")
    assert (args.tls_verify, args.registry) == (True, "h:1")  # type: ignore[attr-defined]


def test_bad_bool_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-tags", "--tls-verify=maybe", "docker://h/r"]) == 2
    assert "invalid boolean value 'maybe'" in capsys.readouterr().err


# -- access flags --------------------------------------------------------------------------------
def test_access_flags_of_a_single_image_command() -> None:
    opts = options_for(
        "list-tags",
        "--creds",
        "me:pa:ss",
        "--cert-dir",
        "/certs",
        "--authfile",
        "a.json",
        "--registry-token",
        "tok",
        "--retry-times",
        "5",
        "docker://h/r",
    )
    assert opts.credentials == Credentials("me", "pa:ss")  # type: ignore[attr-defined]
    assert opts.cert_dir == "/certs"  # type: ignore[attr-defined]
    assert opts.authfile == "a.json"  # type: ignore[attr-defined]
    assert opts.registry_token == "tok"  # type: ignore[attr-defined]
    assert opts.retry == RetryPolicy(attempts=5)  # type: ignore[attr-defined]
    assert options_for("delete", "docker://h/r:t").retry == RetryPolicy()  # type: ignore[attr-defined]


def test_username_password_and_no_creds() -> None:
    opts = options_for("inspect", "--username", "u", "--password", "p:w", "docker://h/r")
    assert opts.credentials == Credentials("u", "p:w")  # type: ignore[attr-defined]
    opts = options_for("inspect", "--no-creds", "docker://h/r")
    assert opts.no_creds is True  # type: ignore[attr-defined]
    assert opts.credentials is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--creds", "a:b", "--username", "a"], "--creds and --username cannot be specified"),
        (["--creds", "a:b", "--password", "b"], "--creds and --password cannot be specified"),
        (["--username", "a"], "--username and --password must be specified together"),
        (["--creds", "a:b", "--no-creds"], "--creds and --no-creds cannot be specified"),
    ],
)
def test_conflicting_credential_flags(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", *flags, "docker://127.0.0.1:1/r:t"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imagetypes: error: ")
    assert message in err
    assert "Traceback" not in err


def test_copy_flags_per_side() -> None:
    argv = [
        "copy",
        "--authfile",
        "shared.json",
        "--dest-authfile",
        "dest.json",
        "--src-username",
        "su",
        "--src-password",
        "sp",
        "--dest-creds",
        "du:dp",
        "--src-tls-verify=false",
        "--dest-cert-dir",
        "/dc",
    ]
    argv += ["--dest-registry-token", "dt", "--retry-times", "2", "oci:a", "docker://h/r:t"]
    args = parse(*argv)
    src = _transport_options(args, "src_")  # type: ignore[arg-type]
    dest = _transport_options(args, "dest_")  # type: ignore[arg-type]
    assert src.authfile == "shared.json"
    assert dest.authfile == "dest.json"
    assert src.credentials == Credentials("su", "sp")
    assert dest.credentials == Credentials("du", "dp")
    assert (src.tls_verify, dest.tls_verify) == (False, None)
    assert dest.cert_dir == "/dc"
    assert (src.registry_token, dest.registry_token) == (None, "dt")
    assert src.retry == dest.retry == RetryPolicy(attempts=2)
    src = options_for("copy", "--src-no-creds", "oci:a", "oci:b", prefix="src_")
    assert src.no_creds is True  # type: ignore[attr-defined]


def test_retry_times_must_be_a_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--retry-times", "-1", "oci:x"]) == 2
    assert "must not be negative" in capsys.readouterr().err


# -- list-tags and delete argument checks ----------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("docker://localhost:5000/repo:tag", "No tag or digest allowed"),
        ("docker:localhost:5000/repo", "expected docker://NAME"),
        ("oci:./layout", 'Unsupported transport "oci" for listing tags'),
    ],
)
def test_list_tags_refuses(ref: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-tags", ref]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imagetypes: error: ")
    assert message in err


def test_delete_needs_a_transport_that_deletes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["delete", f"dir:{tmp_path / 'x'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imagetypes: error: ")
    assert "delet" in err
    assert err.count("\n") == 1


# -- open_registry -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("location", "host"),
    [
        ("docker://localhost:5000", "localhost:5000"),
        ("localhost:5000", "localhost:5000"),
        ("quay.io", "quay.io"),
        ("docker://127.0.0.1:1234/", "127.0.0.1:1234"),
    ],
)
def test_open_registry_locations(location: str, host: str) -> None:
    from imagetypes_transports.docker import DockerRegistry

    creds = Credentials("u", "p")
    with open_registry(location, tls_verify=False, credentials=creds, authfile="a.json") as reg:
        assert isinstance(reg, DockerRegistry)
        assert reg.host == host
        assert reg.options.tls_verify is False
        assert reg.options.credentials == creds
        assert reg.options.authfile == "a.json"


def test_open_registry_keeps_options_unless_overridden() -> None:
    from imagetypes import TransportOptions

    base = TransportOptions(tls_verify=False, cert_dir="/c")
    with open_registry("docker://h:1", options=base) as reg:
        assert reg.options.tls_verify is False  # type: ignore[attr-defined]
        assert reg.options.cert_dir == "/c"  # type: ignore[attr-defined]
    with open_registry("docker://h:1", options=base, tls_verify=True) as reg:
        assert reg.options.tls_verify is True  # type: ignore[attr-defined]


def test_open_registry_errors() -> None:
    from imagetypes.errors import InvalidReferenceError, UnknownTransportError, UnsupportedError

    with pytest.raises(UnknownTransportError):
        open_registry("nosuchtransport:thing")
    with pytest.raises(UnsupportedError, match="no registries"):
        open_registry("oci:./layout")
    with pytest.raises(InvalidReferenceError):
        open_registry("docker://host/with/path")
    with pytest.raises(InvalidReferenceError):
        open_registry("")


# -- login and logout without a registry -----------------------------------------------------------
def test_login_get_login(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["login", "--get-login", "h.example:5000"]) == 1
    assert capsys.readouterr().err == "imagetypes: error: not logged into h.example:5000\n"
    clean_env.parent.mkdir(parents=True)
    clean_env.write_text(json.dumps({"auths": {"h.example:5000": {"auth": b64("alice:pw")}}}))
    assert main(["login", "--get-login", "h.example:5000"]) == 0
    assert capsys.readouterr().out == "alice\n"
    # A namespace key is found through its registry's entry.
    assert main(["login", "--get-login", "h.example:5000/team"]) == 0
    assert capsys.readouterr().out == "alice\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-u", "a", "-p", "b", "--password-stdin"], "Can't specify both --password-stdin"),
        (["--password-stdin"], "Must provide --username with --password-stdin"),
        (["-p", "b"], "cannot prompt for a user name without a terminal"),
        (["-u", "a"], "cannot prompt for a password without a terminal"),
    ],
)
def test_login_argument_errors(
    clean_env: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert main(["login", *argv, "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert not clean_env.exists()


def test_login_refuses_when_an_identity_token_is_stored(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.parent.mkdir(parents=True)
    clean_env.write_text(json.dumps({"auths": {"h.example": {"identitytoken": "secret-tok"}}}))
    assert main(["login", "-u", "a", "-p", "b", "h.example"]) == 1
    err = capsys.readouterr().err
    assert "auth file contains an Identity token" in err
    assert "secret-tok" not in err


def test_logout(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.parent.mkdir(parents=True)
    clean_env.write_text(
        json.dumps(
            {
                "auths": {
                    "a.example": {"auth": b64("a:b")},
                    "b.example:5000": {"auth": b64("c:d")},
                },
                "other": True,
            }
        )
    )
    assert main(["logout", "a.example"]) == 0
    assert capsys.readouterr().out == "Removed login credentials for a.example\n"
    data = json.loads(clean_env.read_text())
    assert data == {"auths": {"b.example:5000": {"auth": b64("c:d")}}, "other": True}
    assert stat.S_IMODE(clean_env.stat().st_mode) == 0o600
    assert main(["logout", "a.example"]) == 1
    assert capsys.readouterr().err == "imagetypes: error: not logged into a.example\n"
    # URLs are reduced to their host, as skopeo does.
    assert main(["logout", "https://b.example:5000/v2/"]) == 0
    assert capsys.readouterr().out == "Removed login credentials for b.example:5000\n"
    assert json.loads(clean_env.read_text())["auths"] == {}


def test_logout_all_and_argument_errors(
    clean_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authfile = tmp_path / "mine.json"
    authfile.write_text(json.dumps({"auths": {"x.example": {"auth": b64("a:b")}}}))
    assert main(["logout", "--authfile", str(authfile), "--all"]) == 0
    assert capsys.readouterr().out == "Removed login credentials for all registries\n"
    assert json.loads(authfile.read_text()) == {"auths": {}}
    assert main(["logout", "-a", "x.example"]) == 1
    assert "--all takes no arguments" in capsys.readouterr().err
    assert main(["logout"]) == 1
    assert "please provide a registry to logout from" in capsys.readouterr().err
    assert main(["logout", "--authfile", str(tmp_path / "missing.json"), "x.example"]) == 1
    assert "checking authfile" in capsys.readouterr().err
