"""GPG keys for tests: each made in a GNUPGHOME of its own, with its fingerprint and public key.

Typical use, as a module-scoped fixture::

    @pytest.fixture(scope="module")
    def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Key, Key]]:
        with key_pair(tmp_path_factory.mktemp("gpg")) as pair:
            yield pair

The gpg-agent that gpg starts for each home is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import attrs

__all__ = ["Key", "gpg", "gpg_keys", "key_pair", "make_key", "stop_agents"]


@attrs.frozen
class Key:
    """A key pair kept in ``home`` (pass it as GNUPGHOME), its fingerprint and exported key."""

    home: Path
    fingerprint: str
    public: bytes


def gpg(home: Path, *args: str) -> bytes:
    """Run gpg non-interactively on ``home``; its standard output (raises when it fails)."""
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout


def make_key(home: Path, name: str, passphrase: str = "", *, cache_passphrase: bool = True) -> Key:
    """A new ed25519 signing key ``name <name@example.com>`` in the new directory ``home``.

    With ``cache_passphrase=False`` the agent never caches a passphrase, so whatever unlocks
    the key (a passphrase file...) has to do so on every use.
    """
    home.mkdir(mode=0o700)
    if not cache_passphrase:
        (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
    gpg(
        home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        passphrase,
        "--quick-gen-key",
        f"{name} <{name}@example.com>",
        "ed25519",
        "sign",
        "never",
    )
    listing = gpg(home, "--list-keys", "--with-colons").decode()
    fingerprint = next(x.split(":")[9] for x in listing.splitlines() if x.startswith("fpr"))
    return Key(home, fingerprint, gpg(home, "--export", fingerprint))


def stop_agents(keys: Iterable[Key]) -> None:
    """Stop the gpg-agent (and any other gpg daemon) of each key's home."""
    for key in keys:
        subprocess.run(["gpgconf", "--homedir", str(key.home), "--kill", "all"], check=False)


@contextlib.contextmanager
def gpg_keys(
    root: Path,
    *names: str,
    passphrases: Mapping[str, str] | None = None,
    cache_passphrase: bool = True,
) -> Iterator[tuple[Key, ...]]:
    """One key per name, in ``root / name``; their agents are stopped on exit."""
    made: list[Key] = []
    try:
        for name in names:
            made.append(
                make_key(
                    root / name,
                    name,
                    (passphrases or {}).get(name, ""),
                    cache_passphrase=cache_passphrase,
                )
            )
        yield tuple(made)
    finally:
        stop_agents(made)


@contextlib.contextmanager
def key_pair(root: Path) -> Iterator[tuple[Key, Key]]:
    """Keys ``one`` and ``two`` (no passphrase) under ``root``; agents stopped on exit."""
    with gpg_keys(root, "one", "two") as (one, two):
        yield one, two
