"""policy.json parsing (strict, as containers/image), scope resolution and simple requirements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagetypes import ImageError, Reference
from imagetypes.trust import (
    InsecureAcceptAnything,
    InvalidPolicyError,
    MatchRepoDigestOrExact,
    Policy,
    PolicyRejectedError,
    Reject,
    SignedBy,
    SigstoreSigned,
    policy_scope_namespaces,
)

MANIFEST = b'{"schemaVersion":2}'


def parse(obj: object) -> Policy:
    return Policy.parse(json.dumps(obj))


def test_insecure_accept_anything_and_reject() -> None:
    Policy.insecure_accept_anything().evaluate("", "dir", None, MANIFEST, [])
    policy = parse({"default": [{"type": "reject"}]})
    with pytest.raises(PolicyRejectedError, match="rejected by policy") as info:
        policy.evaluate("/some/dir", "dir", None, MANIFEST, [])
    assert isinstance(info.value, ImageError)
    assert info.value.requirement == "reject"
    assert info.value.scope is None
    assert "dir:/some/dir" in str(info.value)


def test_every_requirement_must_accept() -> None:
    policy = parse({"default": [{"type": "insecureAcceptAnything"}, {"type": "reject"}]})
    with pytest.raises(PolicyRejectedError, match="requirement 2 of 2, reject"):
        policy.evaluate("", "dir", None, MANIFEST, [])


def test_parse_round_trips_through_to_dict() -> None:
    obj = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                "quay.io/ns": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyData": "AAEC",
                        "signedIdentity": {"type": "matchRepository"},
                    }
                ],
                "example.com": [
                    {
                        "type": "sigstoreSigned",
                        "keyPath": "/k.pub",
                        "signedIdentity": {
                            "type": "remapIdentity",
                            "prefix": "example.com",
                            "signedPrefix": "quay.io/up",
                        },
                    }
                ],
            },
            "dir": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }
    policy = parse(obj)
    assert policy.to_dict() == obj
    signed_by = policy.transports["docker"]["quay.io/ns"][0]
    assert isinstance(signed_by, SignedBy)
    assert signed_by.key_data == b"\x00\x01\x02"


def test_default_signed_identity_is_match_repo_digest_or_exact() -> None:
    policy = parse({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]})
    requirement = policy.default[0]
    assert isinstance(requirement, SignedBy)
    assert requirement.signed_identity == MatchRepoDigestOrExact()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("{}", "'default' missing"),
        ('{"default": []}', "must not be empty"),
        ('{"default": [{"type": "reject"}], "extra": 1}', "unknown key 'extra'"),
        ('{"default": [{"type": "reject"}], "default": [{"type": "reject"}]}', "duplicate key"),
        ('{"default": [{"type": "rejectt"}]}', "unknown policy requirement type 'rejectt'"),
        ('{"default": [{"type": "reject", "x": 1}]}', "unknown key 'x'"),
        ('{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}', "exactly one of keyPath"),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", '
            '"keyData": "AA=="}]}',
            "exactly one of keyPath",
        ),
        # As containers/image: an empty keyPath, or a null keyPaths, is no key source at all.
        ('{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": ""}]}', "exactly one"),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": null}]}',
            "exactly one",
        ),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "", '
            '"keyData": "AA=="}]}',
            "exactly one",
        ),
        # keyPaths and keyDatas for sigstoreSigned came after containers/image 5.23 (whose
        # containers-policy.json(5) is the spec here, and skopeo 1.9.3 refuses them too).
        (
            '{"default": [{"type": "sigstoreSigned", "keyPaths": ["/k"]}]}',
            "unknown key 'keyPaths'",
        ),
        (
            '{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "keyData": "AA=="}]}',
            "exactly one of keyPath and keyData",
        ),
        ('{"default": [{"type": "signedBy", "keyType": "PGP", "keyPath": "/a"}]}', "keyType"),
        ('{"default": [{"type": "signedBy", "keyPath": "/a"}]}', "'keyType' missing"),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "%%"}]}',
            "not valid base64",
        ),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", '
            '"signedIdentity": {"type": "matchSomething"}}]}',
            "unknown signedIdentity type",
        ),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", '
            '"signedIdentity": {"type": "exactReference", "dockerReference": "busybox"}}]}',
            "neither a tag nor a digest",
        ),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", '
            '"signedIdentity": {"type": "remapIdentity", "prefix": "quay.io/ns:1", '
            '"signedPrefix": "quay.io"}}]}',
            "prefix 'quay.io/ns:1' is not valid",
        ),
        ('{"default": [{"type": "sigstoreSigned"}]}', "exactly one of keyPath and keyData"),
        (
            '{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "fulcio": {}}]}',
            "unknown key 'fulcio'",
        ),
        (
            '{"default": [{"type": "reject"}], '
            '"transports": {"dir": {"rel": [{"type": "reject"}]}}}',
            "must be an absolute path",
        ),
        (
            '{"default": [{"type": "reject"}], "transports": {"dir": {"/": [{"type": "reject"}]}}}',
            "transport default scope",
        ),
        (
            '{"default": [{"type": "reject"}], '
            '"transports": {"oci": {"/a/../b": [{"type": "reject"}]}}}',
            "non-canonical",
        ),
        (
            '{"default": [{"type": "reject"}], "transports": {"docker": {"x": {}}}}',
            "must be an array",
        ),
        (
            '{"default": [{"type": "reject"}], "transports": {"docker": {"x": []}}}',
            "must not be empty",
        ),
    ],
)
def test_invalid_policies_are_refused(document: str, message: str) -> None:
    with pytest.raises(InvalidPolicyError, match=message):
        Policy.parse(document)


def test_load_reports_the_file(tmp_path: Path) -> None:
    good = tmp_path / "policy.json"
    good.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    assert Policy.load(good).default == (InsecureAcceptAnything(),)
    bad = tmp_path / "bad.json"
    bad.write_text('{"default": 1}')
    with pytest.raises(InvalidPolicyError, match=str(bad)):
        Policy.load(bad)
    with pytest.raises(InvalidPolicyError, match="cannot read"):
        Policy.load(tmp_path / "missing.json")
    # Past the 4 MiB bound: refused as too large (not parsed cut short, nor read whole).
    huge = tmp_path / "huge.json"
    huge.write_bytes(b'{"default": [{"type": "reject"}]}' + b" " * (4 * 1024 * 1024))
    with pytest.raises(InvalidPolicyError, match=f"{huge}: larger than 4194304 bytes"):
        Policy.load(huge)


def test_load_prefers_the_users_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    user = tmp_path / ".config" / "containers" / "policy.json"
    user.parent.mkdir(parents=True)
    user.write_text('{"default": [{"type": "reject"}]}')
    assert Policy.load().default == (Reject(),)


def test_docker_namespaces() -> None:
    assert policy_scope_namespaces("docker", "registry.example.com:5000/ns/app:1") == [
        "registry.example.com:5000/ns/app",
        "registry.example.com:5000/ns",
        "registry.example.com:5000",
        "*.example.com",
        "*.com",
    ]


def test_path_namespaces() -> None:
    assert policy_scope_namespaces("dir", "/a/b/c") == ["/a/b", "/a"]
    assert policy_scope_namespaces("oci", "/a/b/c") == ["/a/b/c", "/a/b", "/a"]


SCOPED = {
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {
            "": [{"type": "reject"}],
            "*.example.com": [{"type": "insecureAcceptAnything"}],
            "quay.io": [{"type": "reject"}],
            "quay.io/open": [{"type": "insecureAcceptAnything"}],
            "quay.io/open/closed": [{"type": "reject"}],
            "quay.io/open/closed:public": [{"type": "insecureAcceptAnything"}],
        },
        "dir": {
            "/srv/trusted": [{"type": "insecureAcceptAnything"}],
        },
        "oci": {
            "/srv/layouts/one": [{"type": "insecureAcceptAnything"}],
        },
    },
}


@pytest.mark.parametrize(
    ("transport", "identity", "scope"),
    [
        ("docker", "quay.io/open/app:1", "quay.io/open"),
        ("docker", "quay.io/open/closed:1", "quay.io/open/closed"),
        ("docker", "quay.io/open/closed:public", "quay.io/open/closed:public"),
        ("docker", "quay.io/other/app:1", "quay.io"),
        ("docker", "registry.example.com/app:1", "*.example.com"),
        ("docker", "a.b.example.com:5000/app:1", "*.example.com"),
        ("docker", "example.com/app:1", ""),
        ("docker", "docker.io/library/busybox:latest", ""),
        ("dir", "/srv/trusted/image", "/srv/trusted"),
        ("dir", "/srv/trusted", "/srv/trusted"),
        ("dir", "/srv/trustedx", None),
        ("oci", "/srv/layouts/one", "/srv/layouts/one"),
        ("oci", "/srv/layouts/two", None),
        ("oci-archive", "/x.tar", None),
    ],
)
def test_most_specific_scope_wins(transport: str, identity: str, scope: str | None) -> None:
    policy = parse(SCOPED)
    found, requirements = policy.requirements_for(transport, identity)
    assert found == scope
    if scope is None:
        assert requirements == policy.default
    else:
        assert requirements == policy.transports[transport][scope]
    accepted = requirements == (InsecureAcceptAnything(),)
    ref = Reference.parse(identity) if transport == "docker" else None
    if accepted:
        policy.evaluate(identity, transport, ref, MANIFEST, [])
    else:
        with pytest.raises(PolicyRejectedError):
            policy.evaluate(identity, transport, ref, MANIFEST, [])


def test_evaluate_reference_uses_the_transport_identity(tmp_path: Path) -> None:
    from imagetypes import parse_reference

    trusted = tmp_path / "trusted"
    policy = parse(
        {
            "default": [{"type": "reject"}],
            "transports": {"dir": {str(trusted.resolve()): [{"type": "insecureAcceptAnything"}]}},
        }
    )
    policy.evaluate_reference(parse_reference(f"dir:{trusted}/img"), MANIFEST, [])
    with pytest.raises(PolicyRejectedError):
        policy.evaluate_reference(parse_reference(f"dir:{tmp_path}/other"), MANIFEST, [])


def test_sigstore_signed_requires_a_sigstore_signature(tmp_path: Path) -> None:
    policy = Policy((SigstoreSigned(key_data=b"irrelevant"),))
    with pytest.raises(PolicyRejectedError, match=r"no signature exists \(1 non-sigstore"):
        policy.evaluate("", "dir", None, MANIFEST, [b"\x89 pretend gpg"])


def test_signed_base_layer_parses_but_rejects() -> None:
    policy = parse(
        {"default": [{"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchExact"}}]}
    )
    with pytest.raises(PolicyRejectedError, match="not implemented"):
        policy.evaluate("", "dir", None, MANIFEST, [])


def test_other_key_types_parse_but_reject() -> None:
    policy = parse(
        {"default": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/a"}]}
    )
    with pytest.raises(PolicyRejectedError, match="unimplemented keyType"):
        policy.evaluate("", "dir", None, MANIFEST, [b"\x89x"])
