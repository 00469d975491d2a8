"""Trust on the command line, with skopeo's spellings: the signature policy (``--policy``,
``--insecure-policy``), copy's signing flags, ``standalone-sign``, ``standalone-verify`` and
``generate-sigstore-key``.

GPG keys come from ``$GNUPGHOME`` (default ``~/.gnupg``), as with skopeo.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from ..errors import ImageError

log = logging.getLogger("imagetypes.cli")

if TYPE_CHECKING:
    from pathlib import Path

    from ..trust import Policy

__all__ = [
    "add_commands",
    "add_sign_flags",
    "load_policy",
    "read_passphrase_file",
    "sign_options",
]

#: Bound on a file read whole (manifests, signatures, passphrases, keyrings).
_MAX_FILE_SIZE = 4 * 1024 * 1024
_GPG_TIMEOUT = 60.0


class TrustCommandError(ImageError):
    """A trust command cannot do what it was asked (a missing key, a file it will not
    overwrite)."""


def _flag_error(message: str) -> ImageError:
    from . import FlagError

    return FlagError(message)


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _read_file(path: str, what: str) -> bytes:
    from ..blobfiles import read_limited

    try:
        data = read_limited(path, _MAX_FILE_SIZE)
    except OSError as e:
        raise TrustCommandError(f"cannot read the {what} {path}: {e.strerror}") from e
    if data is None:
        raise TrustCommandError(f"the {what} {path} is too large")
    return data


# -- the policy --------------------------------------------------------------------------------


def load_policy(args: argparse.Namespace) -> Policy | None:
    """The policy a command that reads images applies, as skopeo loads it.

    ``--insecure-policy`` wins (no check at all, so None); else ``--policy FILE``; else the
    user's ``~/.config/containers/policy.json`` or the system's
    ``/etc/containers/policy.json``. A policy that cannot be read is an error, as in skopeo.

    One departure from skopeo: when no policy file exists at all (a machine without the
    containers tools, where ``pip install imagetypes`` is all there is), the command warns and
    goes on without a check instead of refusing every copy; see docs/design.md.
    """
    from ..trust import InvalidPolicyError, Policy, default_policy_path

    if getattr(args, "insecure_policy", False):
        return None
    path = getattr(args, "policy", None)
    if path is None and not default_policy_path().exists():
        log.warning(
            "no trust policy (%s): copying without a signature policy check; "
            "give one with --policy FILE",
            default_policy_path(),
        )
        return None
    try:
        return Policy.load(path)
    except InvalidPolicyError as e:
        raise InvalidPolicyError(
            f"error loading the trust policy: {e} (give one with --policy FILE, or use "
            "--insecure-policy to run without any policy check)"
        ) from None


def add_global_flags(group: argparse._ArgumentGroup, default: object, top: bool) -> None:
    """``--policy``, ``--insecure-policy``, ``--registries.d``, ``--registries-conf``."""
    group.add_argument(
        "--policy",
        metavar="FILE",
        default=default,
        help="the trust policy file (default: ~/.config/containers/policy.json, else "
        "/etc/containers/policy.json)",
    )
    group.add_argument(
        "--insecure-policy",
        dest="insecure_policy",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="run without any policy check",
    )
    group.add_argument(
        "--registries.d",
        dest="registries_d",
        metavar="DIR",
        default=default,
        help="use registry configuration files in DIR (e.g. for signature storage)",
    )
    group.add_argument(
        "--registries-conf",
        dest="registries_conf",
        metavar="FILE",
        default=default,
        help="the registries.conf file (default: $CONTAINERS_REGISTRIES_CONF, else the user's "
        "or the system's)",
    )


def transport_extra(args: argparse.Namespace) -> dict[str, Any]:
    """The docker transport settings the global flags ask for (``TransportOptions.extra``)."""
    extra: dict[str, Any] = {}
    registries_d = getattr(args, "registries_d", None)
    if registries_d:
        extra["docker.registries_d"] = str(registries_d)
    registries_conf = getattr(args, "registries_conf", None) or os.environ.get(
        "CONTAINERS_REGISTRIES_CONF"
    )
    if registries_conf:
        extra["docker.registries_conf"] = str(registries_conf)
    return extra


# -- passphrases -------------------------------------------------------------------------------


def read_passphrase_file(path: str) -> str:
    """The first line of ``path``, without its line break (as skopeo reads it)."""
    data = _read_file(path, "passphrase file")
    line = data.split(b"\n", 1)[0]
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TrustCommandError(f"the passphrase file {path} is not UTF-8 text") from e


def _prompt_passphrase(key_file: str) -> str:
    """Ask on the terminal, as skopeo does; refuse when standard input is not a terminal."""
    if not sys.stdin.isatty():
        raise TrustCommandError(
            f"cannot prompt for a passphrase for key {key_file}: standard input is not a "
            "terminal (use --passphrase-file / --sign-passphrase-file)"
        )
    import getpass

    return getpass.getpass(f"Passphrase for key {key_file}: ")


# -- copy's signing flags ------------------------------------------------------------------------


def add_sign_flags(parser: argparse.ArgumentParser, *, copy: bool = True) -> None:
    """``--sign-by`` and friends, and ``--additional-tag``, for ``copy``; with ``copy=False``
    (``sync``) only the flags ``skopeo sync`` has: no ``--sign-identity`` (each image is signed
    as its own destination reference) and no ``--additional-tag``."""
    group = parser.add_argument_group("signing")
    group.add_argument(
        "--sign-by",
        dest="sign_by",
        metavar="FINGERPRINT",
        help="sign the image using a GPG key with the specified FINGERPRINT ($GNUPGHOME)",
    )
    group.add_argument(
        "--sign-by-sigstore-private-key",
        dest="sign_by_sigstore_private_key",
        metavar="PATH",
        help="sign the image using a sigstore private key at PATH",
    )
    if copy:
        group.add_argument(
            "--sign-identity",
            dest="sign_identity",
            metavar="REFERENCE",
            help="identity of the signed image, a reference with a tag or digest (default: the "
            "destination's Docker reference)",
        )
    group.add_argument(
        "--sign-passphrase-file",
        dest="sign_passphrase_file",
        metavar="PATH",
        help="read a passphrase for signing from the first line of PATH",
    )
    if not copy:
        return
    parser.add_argument(
        "--additional-tag",
        dest="additional_tag",
        action="append",
        metavar="NAME:TAG",
        help="additional tags (docker-archive destinations; repeatable)",
    )


def sign_options(args: argparse.Namespace) -> dict[str, Any]:
    """The CopyOptions fields copy's signing flags ask for."""
    sign_by = getattr(args, "sign_by", None)
    sigstore_key = getattr(args, "sign_by_sigstore_private_key", None)
    passphrase_file = getattr(args, "sign_passphrase_file", None)
    identity = getattr(args, "sign_identity", None)
    if passphrase_file and sign_by and sigstore_key:
        raise _flag_error(
            "only one of --sign-by and --sign-by-sigstore-private-key can be used with "
            "--sign-passphrase-file"
        )
    passphrase: str | None = None
    if passphrase_file:
        passphrase = read_passphrase_file(passphrase_file)
    elif sigstore_key:
        passphrase = _prompt_passphrase(sigstore_key)
    # A GPG key without a passphrase file: gpg-agent asks, through its own channel.
    return {
        "sign_by": sign_by or None,
        "sign_by_sigstore_private_key": sigstore_key or None,
        "sign_identity": identity or None,
        "sign_passphrase": passphrase,
    }


def additional_tags(args: argparse.Namespace) -> list[str]:
    """``--additional-tag`` values (repeatable; commas separate several, as skopeo's)."""
    tags: list[str] = []
    for value in getattr(args, "additional_tag", None) or ():
        tags += [t.strip() for t in str(value).split(",") if t.strip()]
    return tags


# -- standalone-sign / standalone-verify ----------------------------------------------------------


def _cmd_standalone_sign(args: argparse.Namespace) -> int:
    from ..trust import sign_simple

    manifest = _read_file(args.manifest, "manifest")
    passphrase = read_passphrase_file(args.passphrase_file) if args.passphrase_file else None
    signature = sign_simple(
        manifest, args.docker_reference, args.fingerprint, passphrase=passphrase
    )
    try:
        with open(args.output, "wb") as f:
            f.write(signature)
    except OSError as e:
        raise TrustCommandError(f"cannot write the signature to {args.output}: {e.strerror}") from e
    return 0


def _export_public_keys(fingerprints: list[str]) -> bytes:
    """The public keys with those fingerprints from the user's GnuPG keyring ($GNUPGHOME)."""
    import shutil
    import subprocess

    from ..trust import GPGError

    gpg = shutil.which("gpg")
    if gpg is None:
        raise GPGError("verifying simple signatures needs the gpg program (GnuPG)")
    try:
        proc = subprocess.run(
            [gpg, "--batch", "--no-tty", "--export", "--", *fingerprints],
            capture_output=True,
            timeout=_GPG_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise GPGError(f"gpg did not answer within {_GPG_TIMEOUT:.0f} seconds") from e
    if proc.returncode != 0 or not proc.stdout:
        raise GPGError(
            f"no public key with fingerprint {', '.join(fingerprints)} in the GnuPG keyring"
        )
    return proc.stdout


def _cmd_standalone_verify(args: argparse.Namespace) -> int:
    from ..trust import verify_simple

    fingerprints = [f.strip() for f in args.fingerprints.split(",") if f.strip()]
    if not fingerprints:
        raise _flag_error("no key fingerprint given")
    manifest = _read_file(args.manifest, "manifest")
    signature = _read_file(args.signature, "signature")
    if args.public_key_file:
        keyring = _read_file(args.public_key_file, "public key file")
        wanted: list[str] | None = None if fingerprints == ["any"] else fingerprints
    else:
        if fingerprints == ["any"]:
            raise _flag_error("cannot use any fingerprint without a public key file")
        keyring = _export_public_keys(fingerprints)
        wanted = fingerprints
    verified = verify_simple(
        signature, manifest, keyring, identity=args.docker_reference, fingerprints=wanted
    )
    _out(
        f"Signature verified using fingerprint {verified.key_fingerprint}, "
        f"digest {verified.docker_manifest_digest}\n"
    )
    return 0


# -- generate-sigstore-key ---------------------------------------------------------------------


def _cmd_generate_sigstore_key(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..trust import generate_sigstore_key

    prefix = args.output_prefix
    if not prefix:
        raise _flag_error("--output-prefix must not be empty")
    private_path, public_path = Path(f"{prefix}.private"), Path(f"{prefix}.pub")
    for path in (public_path, private_path):
        if os.path.lexists(path):
            raise TrustCommandError(f'refusing to overwrite existing "{path}"')
    if args.passphrase_file:
        passphrase = read_passphrase_file(args.passphrase_file)
    else:
        passphrase = _prompt_passphrase(str(private_path))
    private_pem, public_pem = generate_sigstore_key(passphrase)
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    _out(f'Key written to "{private_path}" and "{public_path}"\n')
    return 0


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never replacing a file that appeared meanwhile) with ``data``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise TrustCommandError(f'refusing to overwrite existing "{path}"') from None
    except OSError as e:
        raise TrustCommandError(f"cannot write {path}: {e.strerror}") from e
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# -- the parser --------------------------------------------------------------------------------


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    """``standalone-sign``, ``standalone-verify`` and ``generate-sigstore-key``."""
    p = sub.add_parser(
        "standalone-sign",
        parents=common,
        help="create a signature using local files",
        description="Sign MANIFEST as DOCKER-REFERENCE with the GPG key KEY-FINGERPRINT "
        "($GNUPGHOME), writing the signature to SIGNATURE (skopeo standalone-sign).",
    )
    p.add_argument("manifest", metavar="MANIFEST")
    p.add_argument("docker_reference", metavar="DOCKER-REFERENCE")
    p.add_argument("fingerprint", metavar="KEY-FINGERPRINT")
    p.add_argument(
        "-o", "--output", required=True, metavar="SIGNATURE", help="write the signature here"
    )
    p.add_argument(
        "--passphrase-file",
        metavar="PATH",
        help="read the key's passphrase from the first line of PATH",
    )
    p.set_defaults(command=_cmd_standalone_sign)

    p = sub.add_parser(
        "standalone-verify",
        parents=common,
        help="verify a signature using local files",
        description="Verify that SIGNATURE signs MANIFEST as DOCKER-REFERENCE with one of "
        "KEY-FINGERPRINTS (comma-separated; the keys come from $GNUPGHOME, or from "
        "--public-key-file, where 'any' accepts every key of the file); print the digest.",
    )
    p.add_argument("manifest", metavar="MANIFEST")
    p.add_argument("docker_reference", metavar="DOCKER-REFERENCE")
    p.add_argument("fingerprints", metavar="KEY-FINGERPRINTS")
    p.add_argument("signature", metavar="SIGNATURE")
    p.add_argument(
        "--public-key-file",
        metavar="PATH",
        help="trust the public keys in PATH instead of the GnuPG keyring",
    )
    p.set_defaults(command=_cmd_standalone_verify)

    p = sub.add_parser(
        "generate-sigstore-key",
        parents=common,
        help="generate a sigstore key pair",
        description="Write a new sigstore (cosign-compatible) key pair to PREFIX.private "
        "(encrypted with the passphrase) and PREFIX.pub; existing files are never replaced.",
    )
    p.add_argument("--output-prefix", required=True, metavar="PREFIX")
    p.add_argument(
        "--passphrase-file",
        metavar="PATH",
        help="read the passphrase from the first line of PATH (default: ask on the terminal)",
    )
    p.set_defaults(command=_cmd_generate_sigstore_key)
