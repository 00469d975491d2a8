"""Helpers shared by the tests of credentials against real registries and skopeo: an isolated
home for auth files, running skopeo, and a marker for tests that need auth-file lookup wired
into the docker transport."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from registry_fixtures import SKOPEO_BIN, environ_without_proxies

from imagetypes import Credentials, TransportOptions
from imagetypes_transports.docker._credentials import resolve_credentials

__all__ = ["auth_files_wired", "isolate_auth_files", "needs_wiring", "skopeo"]


def auth_files_wired() -> bool:
    """Whether the docker transport's clients read auth files (resolve_credentials -> ours)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "auth.json"
        auth = base64.b64encode(b"probe:secret").decode()
        path.write_text(json.dumps({"auths": {"probe.invalid": {"auth": auth}}}))
        found = resolve_credentials("probe.invalid", None, TransportOptions(authfile=str(path)))
    return found == Credentials("probe", "secret")


needs_wiring = pytest.mark.skipif(
    not auth_files_wired(),
    reason="transports/docker/_credentials.py does not call _authfile.find_credentials yet",
)


def isolate_auth_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every auth file lookup (ours and skopeo's) inside tmp_path; the new home."""
    home = tmp_path / "home"
    run = tmp_path / "run"
    home.mkdir()
    run.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    for name in ("XDG_CONFIG_HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    return home


def skopeo(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run skopeo without proxy settings (unless ``env`` is given); with ``check``, assert it
    succeeded."""
    assert SKOPEO_BIN is not None
    done = subprocess.run(
        [SKOPEO_BIN, *args],
        capture_output=True,
        env=env if env is not None else environ_without_proxies(),
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert done.returncode == 0, done.stderr.decode()
    return done
