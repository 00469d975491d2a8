"""Credentials discovery as containers-auth.json(5) says: the file search order, key
specificity, URL keys, base64 and identity tokens, credential helpers (a real helper program
written here), and login/logout writes that keep everything else."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from imagetypes import Credentials, TransportOptions
from imagetypes_transports.docker._authfile import (
    AuthFileError,
    CredentialHelperError,
    auth_file_paths,
    default_authfile,
    find_credentials,
    lookup_credentials,
    remove_all,
    remove_credentials,
    write_credentials,
)

HOST = "registry.example:5000"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def entry(user: str, password: str, **extra: Any) -> dict[str, Any]:
    return {"auth": b64(f"{user}:{password}"), **extra}


def write_json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
    return path


class Env:
    """A home, runtime and config folder under tmp_path, and nothing else from the real env."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = tmp_path / "home"
        self.runtime = tmp_path / "run"
        self.home.mkdir()
        self.runtime.mkdir()
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(self.runtime))
        for name in ("XDG_CONFIG_HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE"):
            monkeypatch.delenv(name, raising=False)

    @property
    def primary(self) -> Path:
        return self.runtime / "containers" / "auth.json"

    @property
    def config_home(self) -> Path:
        return self.home / ".config" / "containers" / "auth.json"

    @property
    def docker(self) -> Path:
        return self.home / ".docker" / "config.json"

    @property
    def legacy(self) -> Path:
        return self.home / ".dockercfg"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return Env(tmp_path, monkeypatch)


def found(host: str = HOST, repository: str | None = None, **options: Any) -> Credentials | None:
    return find_credentials(host, repository, TransportOptions(**options))


# -- the search path ----------------------------------------------------------------------------
def test_files_are_searched_in_order(env: Env, tmp_path: Path) -> None:
    write_json(env.primary, {"auths": {HOST: entry("primary", "p1")}})
    write_json(env.config_home, {"auths": {HOST: entry("config", "p2")}})
    write_json(env.docker, {"auths": {HOST: entry("docker", "p3")}})
    write_json(env.legacy, {f"https://{HOST}/v1/": entry("legacy", "p4")})
    assert found() == Credentials("primary", "p1")
    env.primary.unlink()
    assert found() == Credentials("config", "p2")
    env.config_home.unlink()
    assert found() == Credentials("docker", "p3")
    env.docker.unlink()
    assert found() == Credentials("legacy", "p4")
    env.legacy.unlink()
    assert found() is None
    assert [p.path for p in auth_file_paths()] == [
        env.primary,
        env.config_home,
        env.docker,
        env.legacy,
    ]
    assert [p.legacy for p in auth_file_paths()] == [False, False, False, True]


def test_authfile_option_and_env_replace_the_primary_file(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(env.primary, {"auths": {HOST: entry("primary", "p1")}})
    write_json(env.docker, {"auths": {HOST: entry("docker", "p3")}})
    from_env = write_json(tmp_path / "env.json", {"auths": {HOST: entry("env", "e")}})
    explicit = write_json(tmp_path / "explicit.json", {"auths": {HOST: entry("flag", "f")}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(from_env))
    assert found() == Credentials("env", "e")
    assert found(authfile=str(explicit)) == Credentials("flag", "f")
    # The override replaces the primary file; the rest of the path is still searched.
    empty = write_json(tmp_path / "empty.json", {"auths": {}})
    assert found(authfile=str(empty)) == Credentials("docker", "p3")
    # A missing explicit file reads as empty, as containers/image does.
    assert found(authfile=str(tmp_path / "missing.json")) == Credentials("docker", "p3")


def test_xdg_config_home_and_docker_config(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(env.config_home, {"auths": {HOST: entry("default-config", "x")}})
    write_json(env.docker, {"auths": {HOST: entry("default-docker", "x")}})
    config = tmp_path / "cfg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    assert found() is None  # neither default location is read any more
    write_json(tmp_path / "dockercfg" / "config.json", {"auths": {HOST: entry("dc", "1")}})
    assert found() == Credentials("dc", "1")
    write_json(config / "containers" / "auth.json", {"auths": {HOST: entry("xdg", "2")}})
    assert found() == Credentials("xdg", "2")


def test_missing_runtime_dir_skips_the_primary_file(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(env.docker, {"auths": {HOST: entry("docker", "d")}})
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "no-such-dir"))
    assert found() == Credentials("docker", "d")
    # But login cannot write there, and says why.
    with pytest.raises(AuthFileError, match=r"XDG_RUNTIME_DIR does not exist"):
        default_authfile()


def test_explicit_credentials_and_no_creds(env: Env) -> None:
    write_json(env.primary, {"auths": {HOST: entry("file", "f")}})
    explicit = Credentials("me", "mine")
    assert found(credentials=explicit) == explicit
    assert found(no_creds=True) is None
    assert found(no_creds=True, credentials=explicit) is None


# -- keys ---------------------------------------------------------------------------------------
def test_most_specific_key_wins(env: Env) -> None:
    write_json(
        env.primary,
        {
            "auths": {
                HOST: entry("host", "h"),
                f"{HOST}/team": entry("team", "t"),
                f"{HOST}/team/app": entry("app", "a"),
            }
        },
    )
    assert found(HOST, "team/app") == Credentials("app", "a")
    assert found(HOST, "team/other") == Credentials("team", "t")
    assert found(HOST, "team") == Credentials("team", "t")
    assert found(HOST, "elsewhere/app") == Credentials("host", "h")
    assert found(HOST, None) == Credentials("host", "h")
    # A key is a path prefix by components, not by characters.
    assert found(HOST, "teamwork") == Credentials("host", "h")
    assert found("other.example", "team/app") is None


def test_file_order_beats_key_specificity(env: Env) -> None:
    write_json(env.primary, {"auths": {HOST: entry("host-in-primary", "1")}})
    write_json(env.docker, {"auths": {f"{HOST}/team/app": entry("repo-in-docker", "2")}})
    assert found(HOST, "team/app") == Credentials("host-in-primary", "1")


def test_url_keys_and_docker_hub(env: Env) -> None:
    write_json(
        env.docker,
        {
            "auths": {
                "https://index.docker.io/v1/": entry("hubuser", "hub"),
                f"http://{HOST}/v2/": entry("urluser", "url"),
            }
        },
    )
    assert found("docker.io", "library/busybox") == Credentials("hubuser", "hub")
    assert found("registry-1.docker.io", None) == Credentials("hubuser", "hub")
    assert found(HOST, "x") == Credentials("urluser", "url")
    # An exact key beats a URL key.
    write_json(
        env.primary,
        {"auths": {"https://docker.io": entry("url", "u"), "docker.io": entry("exact", "e")}},
    )
    assert found("docker.io", "library/busybox") == Credentials("exact", "e")


def test_legacy_dockercfg(env: Env) -> None:
    write_json(
        env.legacy,
        {"https://index.docker.io/v1/": {"auth": b64("old:timer"), "email": "x@example.com"}},
    )
    assert found("docker.io", "library/alpine") == Credentials("old", "timer")


# -- entries ------------------------------------------------------------------------------------
def test_base64_decoding(env: Env) -> None:
    write_json(
        env.primary,
        {
            "auths": {
                "colons.example": {"auth": b64("user:pass:with:colons")},
                "nul.example": {"auth": b64("user:padded\x00\x00")},
                "unicode.example": {"auth": b64("üser:pässwörd")},
            }
        },
    )
    assert found("colons.example") == Credentials("user", "pass:with:colons")
    assert found("nul.example") == Credentials("user", "padded")
    assert found("unicode.example") == Credentials("üser", "pässwörd")


def test_an_entry_without_credentials_falls_through_to_the_next_file(env: Env) -> None:
    # What docker writes next to a credential helper: an empty marker entry.
    write_json(env.primary, {"auths": {HOST: {}}})
    write_json(env.docker, {"auths": {HOST: entry("docker", "d")}})
    assert found() == Credentials("docker", "d")
    write_json(env.primary, {"auths": {HOST: {"auth": b64("no-colon-here")}}})
    assert found() == Credentials("docker", "d")


def test_identity_token(env: Env) -> None:
    write_json(
        env.primary,
        {
            "auths": {
                HOST: {"auth": b64("realuser:"), "identitytoken": "refresh-me"},
                "only-token.example": {"identitytoken": "tok2"},
            }
        },
    )
    assert found() == Credentials("<token>", "refresh-me")
    looked = lookup_credentials(HOST)
    assert looked is not None
    assert looked.username == "realuser"
    assert looked.source == str(env.primary)
    assert found("only-token.example") == Credentials("<token>", "tok2")


def test_malformed_files_are_errors_without_secrets(env: Env) -> None:
    env.primary.parent.mkdir(parents=True)
    env.primary.write_text('{"auths": {"h": {"auth": "c2VjcmV0LXBhc3N3b3Jk"}')  # truncated
    with pytest.raises(AuthFileError, match="cannot parse auth file") as info:
        found("h")
    assert str(env.primary) in str(info.value)
    assert "c2VjcmV0" not in str(info.value)
    write_json(env.primary, {"auths": {"h": {"auth": "not base64 !!! hunter2"}}})
    with pytest.raises(AuthFileError, match="not valid base64") as info:
        found("h")
    assert "hunter2" not in str(info.value)
    write_json(env.primary, {"auths": ["h"]})
    with pytest.raises(AuthFileError, match="'auths' is not a JSON object"):
        found("h")
    write_json(env.primary, [])
    with pytest.raises(AuthFileError, match="does not hold a JSON object"):
        found("h")


def test_secrets_stay_out_of_reprs(env: Env) -> None:
    write_json(env.primary, {"auths": {HOST: entry("alice", "hunter2", identitytoken="tok-xyz")}})
    looked = lookup_credentials(HOST)
    assert looked is not None
    assert "hunter2" not in repr(looked)
    assert "tok-xyz" not in repr(looked)
    creds = found()
    assert creds is not None
    assert "tok-xyz" not in repr(creds)
    assert "hunter2" not in repr(Credentials("alice", "hunter2"))
    assert "hunter2" not in repr(TransportOptions(credentials=Credentials("alice", "hunter2")))


# -- credential helpers -------------------------------------------------------------------------
HELPER = """#!{python}
# A docker credential helper keeping its store in $TEST_HELPER_STORE (a JSON file).
import json, os, sys
path = os.environ["TEST_HELPER_STORE"]
try:
    with open(path) as f:
        store = json.load(f)
except FileNotFoundError:
    store = {{}}
with open(path + ".log", "a") as log:
    log.write(sys.argv[1] + "\\n")
action = sys.argv[1]
data = sys.stdin.read()
if action == "get":
    server = data.strip()
    if server == "broken.example":
        sys.stderr.write("the keychain is locked\\n")
        sys.exit(3)
    if server not in store:
        sys.stdout.write("credentials not found in native keychain\\n")
        sys.exit(1)
    user, secret = store[server]
    json.dump({{"ServerURL": server, "Username": user, "Secret": secret}}, sys.stdout)
elif action == "store":
    obj = json.loads(data)
    if obj["ServerURL"] == "refuse.example":
        sys.stdout.write("cannot store " + obj["Secret"] + "\\n")
        sys.exit(1)
    store[obj["ServerURL"]] = [obj["Username"], obj["Secret"]]
elif action == "erase":
    server = data.strip()
    if server not in store:
        sys.stdout.write("credentials not found in native keychain\\n")
        sys.exit(1)
    del store[server]
elif action == "list":
    json.dump({{k: v[0] for k, v in store.items()}}, sys.stdout)
with open(path, "w") as f:
    json.dump(store, f)
"""


class Helper:
    """``docker-credential-test`` on PATH, with its store in a JSON file."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        program = bin_dir / "docker-credential-test"
        program.write_text(HELPER.format(python=sys.executable))
        program.chmod(0o755)
        self.store_path = tmp_path / "helper-store.json"
        monkeypatch.setenv("TEST_HELPER_STORE", str(self.store_path))
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    @property
    def store(self) -> dict[str, list[str]]:
        if not self.store_path.exists():
            return {}
        data: dict[str, list[str]] = json.loads(self.store_path.read_text())
        return data

    def put(self, server: str, user: str, secret: str) -> None:
        store = self.store
        store[server] = [user, secret]
        self.store_path.write_text(json.dumps(store))

    @property
    def calls(self) -> list[str]:
        log = Path(str(self.store_path) + ".log")
        return log.read_text().split() if log.exists() else []


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Helper:
    return Helper(tmp_path, monkeypatch)


def test_cred_helpers_get(env: Env, helper: Helper) -> None:
    helper.put(HOST, "helped", "s3cret")
    helper.put("tok.example", "<token>", "identity-1")
    write_json(
        env.primary,
        {
            "auths": {HOST: entry("file", "ignored")},
            "credHelpers": {HOST: "test", "tok.example": "test", "none.example": "test"},
        },
    )
    write_json(env.docker, {"auths": {"none.example": entry("docker", "d")}})
    # The helper wins over the same file's auths entry, for every repository of the host.
    assert found(HOST, "some/repo") == Credentials("helped", "s3cret")
    assert helper.calls == ["get"]
    assert found("tok.example") == Credentials("<token>", "identity-1")
    # Nothing in the helper: the search goes on to the next file.
    assert found("none.example") == Credentials("docker", "d")


def test_cred_helper_failures_are_errors(env: Env, helper: Helper) -> None:
    write_json(
        env.primary,
        {"credHelpers": {"broken.example": "test", "absent.example": "not-installed-xyz"}},
    )
    with pytest.raises(CredentialHelperError, match="the keychain is locked"):
        found("broken.example")
    with pytest.raises(CredentialHelperError, match="docker-credential-not-installed-xyz"):
        found("absent.example")
    write_json(env.primary, {"credHelpers": {"x.example": "../evil"}})
    with pytest.raises(CredentialHelperError, match="invalid credential helper name"):
        found("x.example")


def test_creds_store_is_the_default_helper(env: Env, helper: Helper) -> None:
    helper.put("https://index.docker.io/v1/", "hub", "h")
    helper.put(HOST, "stored", "st")
    write_json(
        env.docker, {"auths": {HOST: {}, "plain.example": entry("p", "q")}, "credsStore": "test"}
    )
    assert found("docker.io", "library/busybox") == Credentials("hub", "h")
    assert found(HOST) == Credentials("stored", "st")
    # Not in the store: the file's own entries are used.
    assert found("plain.example") == Credentials("p", "q")
    # A store that is not installed here (desktop.exe, say) is skipped, not an error.
    write_json(env.docker, {"auths": {"plain.example": entry("p", "q")}, "credsStore": "nope-x"})
    assert found("plain.example") == Credentials("p", "q")


# -- writing ------------------------------------------------------------------------------------
def test_write_keeps_other_entries_and_unknown_keys(env: Env) -> None:
    write_json(
        env.primary,
        {
            "auths": {"other.example": {"auth": b64("o:p"), "email": "kept@example.com"}},
            "credHelpers": {"helped.example": "test"},
            "psFormat": "table {{.ID}}",
        },
    )
    env.primary.chmod(0o644)
    where = write_credentials(HOST, Credentials("alice", "pw:1"))
    assert where == str(env.primary)
    data = json.loads(env.primary.read_text())
    assert data["auths"] == {
        "other.example": {"auth": b64("o:p"), "email": "kept@example.com"},
        HOST: {"auth": b64("alice:pw:1")},
    }
    assert data["credHelpers"] == {"helped.example": "test"}
    assert data["psFormat"] == "table {{.ID}}"
    assert stat.S_IMODE(env.primary.stat().st_mode) == 0o600
    assert sorted(p.name for p in env.primary.parent.iterdir()) == ["auth.json"]
    assert found() == Credentials("alice", "pw:1")
    # An update replaces the entry in place.
    write_credentials(HOST, Credentials("alice", "new"))
    assert found() == Credentials("alice", "new")
    assert list(json.loads(env.primary.read_text())["auths"]) == ["other.example", HOST]


def test_write_creates_the_file_as_skopeo_does(env: Env) -> None:
    write_credentials("127.0.0.1:5000", Credentials("alice", "pw:1"))
    # skopeo login writes exactly these bytes for the same login.
    assert env.primary.read_bytes() == (
        b'{\n\t"auths": {\n\t\t"127.0.0.1:5000": {\n\t\t\t"auth": "YWxpY2U6cHc6MQ=="\n\t\t}\n\t}\n}'
    )
    assert stat.S_IMODE(env.primary.parent.stat().st_mode) == 0o700


def test_default_authfile_order(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_authfile() == env.primary
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    assert default_authfile() == tmp_path / "dc" / "config.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "env.json"))
    assert default_authfile() == tmp_path / "env.json"
    assert default_authfile(str(tmp_path / "flag.json")) == tmp_path / "flag.json"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    monkeypatch.delenv("DOCKER_CONFIG")
    assert default_authfile() == Path(f"/run/containers/{os.getuid()}/auth.json")


def test_write_to_an_explicit_file_and_namespaces(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "deep" / "auth.json"
    write_credentials(f"{HOST}/team", Credentials("t", "1"), target)
    assert not env.primary.exists()
    assert json.loads(target.read_text()) == {"auths": {f"{HOST}/team": {"auth": b64("t:1")}}}
    assert found(HOST, "team/app", authfile=str(target)) == Credentials("t", "1")
    for bad in ("https://h.example", "h.example/repo:tag", "h.example/r@sha256:00"):
        with pytest.raises(AuthFileError):
            write_credentials(bad, Credentials("u", "p"), target)


def test_write_identity_token(env: Env) -> None:
    write_credentials(HOST, Credentials("<token>", "refresh-1"))
    assert found() == Credentials("<token>", "refresh-1")


def test_write_and_remove_through_a_cred_helper(env: Env, helper: Helper) -> None:
    write_json(env.primary, {"auths": {}, "credHelpers": {HOST: "test"}})
    before = env.primary.read_bytes()
    where = write_credentials(HOST, Credentials("alice", "in-helper"))
    assert where == "credential helper: test"
    assert helper.store == {HOST: ["alice", "in-helper"]}
    assert env.primary.read_bytes() == before  # nothing written to the file
    assert found() == Credentials("alice", "in-helper")
    # A namespaced key has no helper entry of its own: it goes to the file, as with skopeo.
    write_credentials(f"{HOST}/ns", Credentials("a", "b"))
    assert json.loads(env.primary.read_text())["auths"] == {f"{HOST}/ns": entry("a", "b")}
    assert remove_credentials(HOST) is True
    assert helper.store == {}
    assert remove_credentials(HOST) is False


def test_helper_store_failure_hides_the_secret(env: Env, helper: Helper) -> None:
    write_json(env.primary, {"credHelpers": {"refuse.example": "test"}})
    with pytest.raises(CredentialHelperError, match="store failed") as info:
        write_credentials("refuse.example", Credentials("alice", "topsecret-42"))
    assert "topsecret-42" not in str(info.value)


def test_remove_keeps_other_entries(env: Env) -> None:
    write_json(
        env.primary,
        {"auths": {HOST: entry("a", "b"), "keep.example": entry("c", "d")}, "extra": 1},
    )
    assert remove_credentials(HOST) is True
    data = json.loads(env.primary.read_text())
    assert data == {"auths": {"keep.example": entry("c", "d")}, "extra": 1}
    assert stat.S_IMODE(env.primary.stat().st_mode) == 0o600
    assert remove_credentials(HOST) is False
    assert found("keep.example") == Credentials("c", "d")


def test_remove_all(env: Env, helper: Helper) -> None:
    helper.put("h1.example", "u", "s")
    write_json(
        env.primary,
        {
            "auths": {"a.example": entry("a", "b"), "b.example": entry("c", "d")},
            "credHelpers": {"h1.example": "test"},
            "extra": "kept",
        },
    )
    remove_all()
    assert json.loads(env.primary.read_text()) == {"auths": {}, "extra": "kept"}
    assert helper.store == {}
    assert found("a.example") is None
