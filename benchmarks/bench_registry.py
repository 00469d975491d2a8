"""A throwaway CNCF distribution registry (Debian's ``docker-registry``) for the benchmarks.

It listens on 127.0.0.1 only, keeps its blobs in a temporary folder, speaks plain HTTP, and is
stopped (and its storage removed) by :meth:`Registry.stop`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["REGISTRY_BIN", "Registry", "free_port", "live_registry_cpu"]

REGISTRY_BIN = shutil.which("docker-registry")
_used_ports: set[int] = set()
_live: set[Registry] = set()


def live_registry_cpu() -> float | None:
    """CPU seconds (user + system) the running registries have used so far; None if none run.

    Read before and after a measured command, it tells what the registries spent serving it:
    on two cores their work competes with the client's.
    """
    if not _live:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for registry in list(_live):
        try:
            with open(f"/proc/{registry.process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


def free_port() -> int:
    """A loopback TCP port nobody listens on, never one handed out before by this process.

    Never twice: a client's blob-info cache keys locations by host:port, so a fresh registry on a
    reused port would make a "cold" copy try mounts from repositories that are gone.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise RuntimeError("no unused loopback port found")


class Registry:
    """A running ``docker-registry serve`` with temporary storage under ``parent``."""

    def __init__(self, parent: Path) -> None:
        if REGISTRY_BIN is None:
            raise RuntimeError("docker-registry is not installed")
        self.workdir = Path(tempfile.mkdtemp(prefix="registry-", dir=parent))
        port = free_port()
        self.host = f"127.0.0.1:{port}"
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "storage")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        cfg = self.workdir / "config.yml"
        cfg.write_text(json.dumps(config))  # YAML is a superset of JSON
        self.log = self.workdir / "registry.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        _live.add(self)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"docker-registry did not answer: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def get_json(self, path: str) -> Any:
        """GET ``/v2/<path>`` and parse the JSON answer (manifests with OCI and Docker types)."""
        request = urllib.request.Request(
            f"{self.url}/v2/{path}",
            headers={
                "Accept": "application/vnd.oci.image.manifest.v1+json, "
                "application/vnd.docker.distribution.manifest.v2+json, "
                "application/vnd.oci.image.index.v1+json"
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def tags(self, repository: str) -> list[str]:
        """The tags of ``repository`` (empty when it does not exist)."""
        try:
            tags = self.get_json(f"{repository}/tags/list").get("tags")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise
        return list(tags or [])

    def repositories(self) -> list[str]:
        return list(self.get_json("_catalog?n=1000").get("repositories") or [])

    def stop(self) -> None:
        """Stop the process and delete its storage."""
        _live.discard(self)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
