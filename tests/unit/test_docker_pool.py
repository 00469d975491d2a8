"""Registry clients shared by the images of one run, and configuration parsed once."""

from __future__ import annotations

import threading
from pathlib import Path

import attrs
import pytest

from imagetypes.trust import RegistriesConf
from imagetypes.types import (
    SHARED_STATE_OPTION,
    Credentials,
    SharedState,
    TransportOptions,
)
from imagetypes_transports.docker import RegistryClient
from imagetypes_transports.docker._pool import (
    CLIENT_POOL_KEY,
    RegistryClientPool,
    client_pool,
    registry_client,
)
from imagetypes_transports.docker._signatures import load_registries_d

HOST = "registry.example:5000"


def test_equal_options_share_one_client() -> None:
    pool = RegistryClientPool()
    options = TransportOptions(tls_verify=False)
    a = pool.client(HOST, options, repository="app")
    b = pool.client(HOST, attrs.evolve(options), repository="app")
    assert pool.created == 1
    assert a.auth is b.auth
    assert vars(a)["_http"] is vars(b)["_http"]
    pool.close()


def test_each_user_keeps_its_own_retry_callback() -> None:
    pool = RegistryClientPool()
    seen: list[str] = []
    a = pool.client(HOST, TransportOptions(on_retry=lambda r: seen.append("a")), repository="x")
    b = pool.client(HOST, TransportOptions(on_retry=lambda r: seen.append("b")), repository="x")
    assert pool.created == 1
    assert a.options.on_retry is not b.options.on_retry
    assert a.options.on_retry is not None
    assert b.options.on_retry is not None
    a.options.on_retry(None)  # type: ignore[arg-type,unused-ignore]
    b.options.on_retry(None)  # type: ignore[arg-type,unused-ignore]
    assert seen == ["a", "b"]
    pool.close()


def test_different_credentials_are_never_shared() -> None:
    pool = RegistryClientPool()
    alice = TransportOptions(credentials=Credentials("alice", "a-secret"))
    bob = TransportOptions(credentials=Credentials("bob", "b-secret"))
    a = pool.client(HOST, alice, repository="app")
    b = pool.client(HOST, bob, repository="app")
    anonymous = pool.client(HOST, TransportOptions(no_creds=True), repository="app")
    token = pool.client(HOST, TransportOptions(registry_token="t0k3n"), repository="app")
    assert pool.created == 4
    assert len({id(c.auth) for c in (a, b, anonymous, token)}) == 4
    assert "alice" in repr(a.auth)
    assert "bob" in repr(b.auth)
    pool.close()


def test_other_hosts_repositories_and_settings_are_not_shared() -> None:
    pool = RegistryClientPool()
    base = TransportOptions()
    pool.client(HOST, base, repository="app")
    pool.client("other.example", base, repository="app")
    pool.client(HOST, base, repository="other")
    pool.client(HOST, TransportOptions(tls_verify=False), repository="app")
    pool.client(HOST, TransportOptions(cert_dir="certs"), repository="app")
    pool.client(HOST, TransportOptions(extra={"docker.timeout": 5}), repository="app")
    assert pool.created == 6
    pool.close()


def test_closing_a_view_keeps_the_pooled_client_and_the_pool_closes_it() -> None:
    pool = RegistryClientPool()
    view = pool.client(HOST, TransportOptions(), repository="app")
    http = vars(view)["_http"]
    view.close()
    with view:
        pass
    assert not http.is_closed
    pool.close()
    assert http.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        pool.client(HOST, TransportOptions(), repository="app")


def test_threads_starting_together_make_one_client() -> None:
    pool = RegistryClientPool()
    barrier = threading.Barrier(8)
    got: list[RegistryClient] = []

    def take() -> None:
        barrier.wait()
        got.append(pool.client(HOST, TransportOptions(), repository="app"))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8
    assert pool.created == 1
    assert len({id(c.auth) for c in got}) == 1
    pool.close()


def test_without_shared_state_every_user_gets_its_own_client() -> None:
    options = TransportOptions()
    assert client_pool(options) is None
    a = registry_client(HOST, options, repository="app")
    b = registry_client(HOST, options, repository="app")
    assert a.auth is not b.auth
    a.close()
    assert vars(a)["_http"].is_closed
    b.close()


def test_shared_state_holds_the_pool_and_closes_it() -> None:
    with SharedState() as state:
        options = state.attach(TransportOptions(tls_verify=False))
        assert options.extra[SHARED_STATE_OPTION] is state
        assert SharedState().attach(options) is options  # a caller's own wins
        pool = client_pool(options)
        assert pool is not None
        assert state.get(CLIENT_POOL_KEY, RegistryClientPool) is pool
        client = registry_client(HOST, options, repository="app")
        http = vars(client)["_http"]
    assert http.is_closed
    with pytest.raises(RuntimeError):
        state.get("anything", dict)


def test_shared_state_closes_everything_and_reports_the_first_failure() -> None:
    closed: list[str] = []

    class Closer:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        def close(self) -> None:
            closed.append(self.name)
            if self.fail:
                raise OSError(f"{self.name} failed")

    state = SharedState()
    state.get("a", lambda: Closer("a", fail=True))
    state.get("b", lambda: Closer("b"))
    state.get("plain", dict)
    with pytest.raises(OSError, match="a failed"):
        state.close()
    assert closed == ["b", "a"]


def test_a_shared_state_must_be_one() -> None:
    with pytest.raises(TypeError, match="shared-state"):
        client_pool(TransportOptions(extra={SHARED_STATE_OPTION: "nope"}))


# -- configuration parsed once ------------------------------------------------------------------


def test_registries_conf_is_parsed_once_per_content(tmp_path: Path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "a.example"\ninsecure = true\n')
    first = RegistriesConf.load(conf, drop_in_dirs=[])
    assert RegistriesConf.load(conf, drop_in_dirs=[]) is first
    # The same size, perhaps within the same mtime tick: only the contents tell the change.
    conf.write_text('[[registry]]\nlocation = "a.example"\nblocked  = true\n')
    changed = RegistriesConf.load(conf, drop_in_dirs=[])
    assert changed is not first
    entry = changed.find_registry("a.example/x")
    assert entry is not None
    assert entry.blocked
    assert not entry.insecure


def test_registries_conf_cache_sees_drop_ins_come_and_go(tmp_path: Path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "a.example"\n')
    drop = tmp_path / "d"
    drop.mkdir()
    before = RegistriesConf.load(conf, drop_in_dirs=[drop])
    (drop / "10-block.conf").write_text('[[registry]]\nlocation = "a.example"\nblocked = true\n')
    after = RegistriesConf.load(conf, drop_in_dirs=[drop])
    entry = after.find_registry("a.example")
    assert entry is not None
    assert entry.blocked
    (drop / "10-block.conf").unlink()
    again = RegistriesConf.load(conf, drop_in_dirs=[drop])
    entry = again.find_registry("a.example")
    assert entry is not None
    assert not entry.blocked
    assert again is before


def test_registries_d_is_parsed_once_per_content(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("docker:\n  a.example:\n    lookaside: file:///one\n")
    options = TransportOptions(extra={"docker.registries_d": str(tmp_path)})
    first = load_registries_d(options)
    assert load_registries_d(options) is first
    (tmp_path / "a.yaml").write_text("docker:\n  a.example:\n    lookaside: file:///two\n")
    changed = load_registries_d(options)
    assert changed is not first
    assert changed != first


def test_a_run_reads_its_configuration_files_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sync opens a source and a destination per image; each used to read registries.conf
    # and registries.d again. With a run's shared state they are read once per run.
    from imagetypes.trust import _registries_conf
    from imagetypes_transports.docker._mirrors import load_registries_conf

    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "a.example"\ninsecure = true\n')
    lookaside = tmp_path / "registries.d"
    lookaside.mkdir()
    (lookaside / "a.yaml").write_text("docker:\n  a.example:\n    lookaside: file:///one\n")
    read: list[str] = []
    real_read = _registries_conf.read_config_text

    def counting_read(path: Path, *args: int) -> str:
        if path.parent.parent == tmp_path or path.parent == tmp_path:  # not the system's files
            read.append(path.name)
        return real_read(path, *args)

    monkeypatch.setattr(_registries_conf, "read_config_text", counting_read)
    monkeypatch.setattr("imagetypes.trust._registries_d.read_config_text", counting_read)
    extra = {"docker.registries_conf": str(conf), "docker.registries_d": str(lookaside)}

    with SharedState() as state:
        options = TransportOptions(extra={**extra, SHARED_STATE_OPTION: state})
        for _ in range(3):
            assert load_registries_conf(options).find_registry("a.example") is not None
            assert load_registries_d(options) is load_registries_d(options)
    assert sorted(read) == ["a.yaml", "registries.conf"]

    read.clear()
    alone = TransportOptions(extra=extra)  # no run: every call looks at the files again
    for _ in range(3):
        load_registries_conf(alone)
        load_registries_d(alone)
    assert sorted(read) == ["a.yaml"] * 3 + ["registries.conf"] * 3


def test_a_configuration_option_must_be_a_path_or_the_object() -> None:
    from imagetypes_transports.docker._mirrors import load_registries_conf

    bad = TransportOptions(extra={"docker.registries_conf": 42, "docker.registries_d": 42})
    conf_error = r"docker\.registries_conf must be a path or a RegistriesConf, not int"
    with pytest.raises(TypeError, match=conf_error):
        load_registries_conf(bad)
    with pytest.raises(TypeError, match=r"docker\.registries_d must be a path or a RegistriesD"):
        load_registries_d(bad)
    conf = RegistriesConf.parse('[[registry]]\nlocation = "a.example"\n')
    given = TransportOptions(extra={"docker.registries_conf": conf})
    assert load_registries_conf(given) is conf
