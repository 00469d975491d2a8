"""``imagetypes list-tags``, ``delete`` and ``copy`` with credentials against a real registry
(htpasswd basic auth, and a bearer token server), with skopeo as the reference: list-tags
prints skopeo's bytes, what we delete skopeo cannot find, what we push skopeo pulls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from authkit import isolate_auth_files, needs_wiring, skopeo
from imagebuilder import make_image, make_multiarch, write_oci_layout
from registry_fixtures import (
    REGISTRY_BIN,
    SKOPEO_BIN,
    RunningRegistry,
    TokenServer,
    start_registry,
    write_htpasswd,
)

from imagetypes.cli import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed"),
    pytest.mark.skipif(SKOPEO_BIN is None, reason="skopeo is not installed"),
]

USER, PASSWORD = "carol", "c:pass<&>"
CREDS = f"{USER}:{PASSWORD}"
TOKEN_CREDS = "dave:d4ve"


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_auth_files(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    work = tmp_path_factory.mktemp("cli-basic-registry")
    htpasswd = write_htpasswd(work / "htpasswd", {USER: PASSWORD})
    reg = start_registry(work, auth={"htpasswd": {"realm": "cli", "path": str(htpasswd)}})
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    user, password = TOKEN_CREDS.split(":")
    server = TokenServer(tmp_path_factory.mktemp("cli-token-server"), users={user: password})
    reg = start_registry(
        tmp_path_factory.mktemp("cli-token-registry"), auth=server.registry_auth_config()
    )
    try:
        yield reg
    finally:
        reg.stop()
        server.stop()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_oci_layout(
        tmp_path_factory.mktemp("cli-layout") / "layout",
        {"one": make_image(81), "two": make_image(82), "multi": make_multiarch(83)},
    )


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


# -- helpers -------------------------------------------------------------------------------------
def skopeo_push(policy: Path, layout: Path, tag: str, dest: str, creds: str = CREDS) -> None:
    skopeo(
        "--policy",
        str(policy),
        "copy",
        "--all",
        "--dest-tls-verify=false",
        f"--dest-creds={creds}",
        f"oci:{layout}:{tag}",
        dest,
    )


def ours(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, str]:
    capsysbinary.readouterr()
    code = main(list(args))
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


# -- list-tags -----------------------------------------------------------------------------------
def test_list_tags_is_skopeos_output(
    basic_registry: RunningRegistry,
    layout: Path,
    policy: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    repo = f"{basic_registry.host}/team/app"
    for tag in ("v1", "latest", "1.0.0-rc_1", "Zeta"):
        skopeo_push(policy, layout, "one", f"docker://{repo}:{tag}")
    skopeo_push(policy, layout, "multi", f"docker://{repo}:multi")
    theirs = skopeo("list-tags", "--tls-verify=false", f"--creds={CREDS}", f"docker://{repo}")
    code, out, err = ours(
        capsysbinary, "list-tags", "--tls-verify=false", f"--creds={CREDS}", f"docker://{repo}"
    )
    assert code == 0, err
    assert out == theirs.stdout
    assert json.loads(out) == {
        "Repository": repo,
        "Tags": json.loads(theirs.stdout)["Tags"],
    }
    assert set(json.loads(out)["Tags"]) == {"v1", "latest", "1.0.0-rc_1", "Zeta", "multi"}
    # --username/--password are the same as --creds.
    code, out2, err = ours(
        capsysbinary,
        "list-tags",
        "--tls-verify=false",
        "--username",
        USER,
        "--password",
        PASSWORD,
        "--retry-times",
        "1",
        f"docker://{repo}",
    )
    assert (code, out2) == (0, out), err


def test_list_tags_without_credentials_fails_like_skopeo(
    basic_registry: RunningRegistry, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    repo = f"docker://{basic_registry.host}/team/app"
    assert skopeo("list-tags", "--tls-verify=false", repo, check=False).returncode != 0
    code, out, err = ours(capsysbinary, "list-tags", "--tls-verify=false", "--no-creds", repo)
    assert (code, out) == (1, b"")
    assert err.startswith("imagetypes: error: ")
    assert "UNAUTHORIZED" in err or "unauthorized" in err.lower()
    assert err.count("\n") == 1


def test_list_tags_through_a_token_server(
    token_registry: RunningRegistry,
    layout: Path,
    policy: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    repo = f"{token_registry.host}/tok/list"
    for tag in ("b", "a", "c"):
        skopeo_push(policy, layout, "two", f"docker://{repo}:{tag}", TOKEN_CREDS)
    theirs = skopeo("list-tags", "--tls-verify=false", f"--creds={TOKEN_CREDS}", f"docker://{repo}")
    code, out, err = ours(
        capsysbinary,
        "list-tags",
        "--tls-verify=false",
        f"--creds={TOKEN_CREDS}",
        f"docker://{repo}",
    )
    assert code == 0, err
    assert out == theirs.stdout


@needs_wiring
def test_list_tags_with_an_authfile(
    basic_registry: RunningRegistry,
    layout: Path,
    policy: Path,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    repo = f"{basic_registry.host}/authfile/app"
    skopeo_push(policy, layout, "one", f"docker://{repo}:only")
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
                basic_registry.host,
            ]
        )
        == 0
    )
    theirs = skopeo(
        "list-tags", "--tls-verify=false", "--authfile", str(authfile), f"docker://{repo}"
    )
    code, out, err = ours(
        capsysbinary,
        "list-tags",
        "--tls-verify=false",
        "--authfile",
        str(authfile),
        f"docker://{repo}",
    )
    assert code == 0, err
    assert out == theirs.stdout
    assert json.loads(out)["Tags"] == ["only"]


# -- delete --------------------------------------------------------------------------------------
def test_delete_then_skopeo_cannot_find_it(
    basic_registry: RunningRegistry,
    layout: Path,
    policy: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    repo = f"{basic_registry.host}/del/app"
    skopeo_push(policy, layout, "one", f"docker://{repo}:gone")
    skopeo_push(policy, layout, "two", f"docker://{repo}:kept")
    creds = f"--creds={CREDS}"
    skopeo("inspect", "--tls-verify=false", creds, f"docker://{repo}:gone")
    code, out, err = ours(
        capsysbinary, "delete", "--tls-verify=false", creds, f"docker://{repo}:gone"
    )
    assert (code, out) == (0, b""), err
    missing = skopeo("inspect", "--tls-verify=false", creds, f"docker://{repo}:gone", check=False)
    assert missing.returncode != 0
    assert "manifest unknown" in missing.stderr.decode().lower()
    # The other image is untouched, and the tag list says so (as skopeo sees it).
    skopeo("inspect", "--tls-verify=false", creds, f"docker://{repo}:kept")
    theirs = skopeo("list-tags", "--tls-verify=false", creds, f"docker://{repo}")
    assert json.loads(theirs.stdout)["Tags"] == ["kept"]
    # Deleting it again is a one-line error.
    code, _out, err = ours(
        capsysbinary, "delete", "--tls-verify=false", creds, f"docker://{repo}:gone"
    )
    assert code == 1
    assert err.startswith("imagetypes: error: ")
    assert PASSWORD not in err


def test_delete_needs_credentials(
    basic_registry: RunningRegistry,
    layout: Path,
    policy: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    repo = f"{basic_registry.host}/del/locked"
    skopeo_push(policy, layout, "one", f"docker://{repo}:v1")
    code, _out, err = ours(capsysbinary, "delete", "--tls-verify=false", f"docker://{repo}:v1")
    assert code == 1
    assert "unauthorized" in err.lower()
    skopeo("inspect", "--tls-verify=false", f"--creds={CREDS}", f"docker://{repo}:v1")


# -- copy with credentials -------------------------------------------------------------------------
def test_copy_with_dest_creds_then_skopeo_pulls_it(
    basic_registry: RunningRegistry,
    layout: Path,
    tmp_path: Path,
    policy: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    dest = f"docker://{basic_registry.host}/copied/app:v1"
    digestfile = tmp_path / "digest"
    code, _out, err = ours(
        capsysbinary,
        "copy",
        "-q",
        "--dest-tls-verify=false",
        f"--dest-creds={CREDS}",
        "--retry-times",
        "2",
        "--digestfile",
        str(digestfile),
        f"oci:{layout}:one",
        dest,
    )
    assert code == 0, err
    ours_digest = digestfile.read_text()
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"--creds={CREDS}", dest).stdout)
    assert inspected["Digest"] == ours_digest
    # skopeo pulls it whole (it verifies every blob) into a layout of its own.
    pulled = tmp_path / "pulled"
    skopeo(
        "--policy",
        str(policy),
        "copy",
        "--src-tls-verify=false",
        f"--src-creds={CREDS}",
        dest,
        f"oci:{pulled}:x",
    )
    index = json.loads((pulled / "index.json").read_text())
    assert index["manifests"][0]["digest"] == ours_digest


def test_copy_all_between_registries_with_both_creds(
    basic_registry: RunningRegistry,
    token_registry: RunningRegistry,
    layout: Path,
    policy: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    src = f"docker://{basic_registry.host}/multi/src:v1"
    dest = f"docker://{token_registry.host}/multi/dest:v1"
    skopeo_push(policy, layout, "multi", src)
    code, _out, err = ours(
        capsysbinary,
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        f"--src-creds={CREDS}",
        "--dest-tls-verify=false",
        f"--dest-creds={TOKEN_CREDS}",
        src,
        dest,
    )
    assert code == 0, err
    raw_src = skopeo("inspect", "--raw", "--tls-verify=false", f"--creds={CREDS}", src).stdout
    raw_dest = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"--creds={TOKEN_CREDS}", dest
    ).stdout
    assert raw_src == raw_dest


def test_copy_without_dest_creds_is_refused(
    basic_registry: RunningRegistry,
    layout: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    dest = f"docker://{basic_registry.host}/copied/refused:v1"
    code, _out, err = ours(
        capsysbinary, "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:one", dest
    )
    assert code == 1
    assert "unauthorized" in err.lower()
    missing = skopeo("inspect", "--tls-verify=false", f"--creds={CREDS}", dest, check=False)
    assert missing.returncode != 0
