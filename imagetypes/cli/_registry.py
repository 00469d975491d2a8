"""The registry commands: ``list-tags``, ``delete``, ``login`` and ``logout``, as skopeo's.

Login and logout use the docker transport's auth file support
(``imagetypes_transports.docker._authfile``), imported when they run: the command is an
application of the library and may use the built-in transports, while the library's core does
not import them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import urllib.parse
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import ImageError, InvalidReferenceError, UnknownTransportError, UnsupportedError

if TYPE_CHECKING:
    from ..reference import Reference
    from ..types import Credentials

__all__ = ["add_commands"]


def _docker_module(name: str = "") -> ModuleType:
    """The docker transport's package (or one of its modules), looked up at run time."""
    return importlib.import_module("imagetypes_transports.docker" + (f".{name}" if name else ""))


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# -- list-tags and delete --------------------------------------------------------------------------
def _repository_reference(text: str) -> Reference:
    """``docker://NAME`` (or a bare ``NAME``) without tag or digest."""
    from ..plugins import get_transport
    from ..reference import Reference

    name, sep, rest = text.partition(":")
    if sep and name == "docker":
        if not rest.startswith("//"):
            raise InvalidReferenceError(
                f"invalid docker: reference {text!r}: expected docker://NAME"
            )
        rest = rest[2:]
    elif sep and not rest[:1].isdigit():
        try:
            get_transport(name)
        except UnknownTransportError:
            rest = text  # a registry host with a port, or something the name grammar refuses
        else:
            raise UnsupportedError(
                f'Unsupported transport "{name}" for listing tags. Only supported: docker'
            )
    else:
        rest = text
    ref = Reference.parse(rest)
    if not ref.is_name_only:
        raise InvalidReferenceError(f"No tag or digest allowed in reference {text!r}")
    return ref


def _cmd_list_tags(args: argparse.Namespace) -> int:
    from ..plugins import open_registry
    from . import _print_json, _transport_options

    ref = _repository_reference(args.image)
    options = _transport_options(args)
    with open_registry(f"docker://{ref.domain}", options=options) as registry:
        tags = list(registry.repository(ref.path).tags())
    _print_json({"Repository": ref.name, "Tags": tags})
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from ..plugins import parse_reference
    from . import _transport_options

    parse_reference(args.image).delete(_transport_options(args))
    return 0


# -- login and logout ----------------------------------------------------------------------------
def _default_authfile(flag: str | None) -> str | None:
    """What skopeo's login/logout take as ``--authfile`` when it is not given."""
    if flag:
        return flag
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return os.environ["REGISTRY_AUTH_FILE"]
    if os.environ.get("DOCKER_CONFIG"):
        return os.path.join(os.environ["DOCKER_CONFIG"], "config.json")
    return None


def _login_key(text: str) -> tuple[str, str]:
    """The auth file key (``host[:port][/namespace...]``) and the registry (``host[:port]``)."""
    key = text
    if text.startswith(("http://", "https://")):
        key = urllib.parse.urlsplit(text).netloc
    registry = key.split("/", 1)[0]
    if not registry:
        raise InvalidReferenceError(f"invalid registry {text!r}")
    if key != registry:
        from ..reference import Reference

        ref = Reference.parse(key)
        if not ref.is_name_only:
            raise InvalidReferenceError(f'reference "{key}" contains tag or digest')
    return key, registry


def _read_password_stdin() -> str:
    # As skopeo: every line of stdin, without the line ends.
    return "".join(sys.stdin.read().splitlines())


def _prompt(username: str | None, password: str | None, stored_user: str) -> Credentials:
    """Ask for what was not given, on a terminal only."""
    import getpass

    from ..types import Credentials

    interactive = sys.stdin is not None and sys.stdin.isatty()
    if not username:
        if not interactive:
            raise ImageError("cannot prompt for a user name without a terminal: use --username")
        _out(f"Username ({stored_user}): " if stored_user else "Username: ")
        username = sys.stdin.readline().strip() or stored_user
    if not password:
        if not interactive:
            raise ImageError("cannot prompt for a password without a terminal: use --password")
        password = getpass.getpass("Password: ")
    return Credentials(username.strip(), password)


def _cmd_login(args: argparse.Namespace) -> int:
    from ..types import TransportOptions

    af = _docker_module("_authfile")
    docker = _docker_module()
    AuthenticationError, RegistryError = docker.AuthenticationError, docker.RegistryError

    key, registry = _login_key(args.registry)
    authfile = _default_authfile(args.authfile)
    options = TransportOptions(tls_verify=args.tls_verify, cert_dir=args.cert_dir)
    host, _, repository = key.partition("/")
    stored = af.lookup_credentials(host, repository or None, authfile)
    if args.get_login:
        if stored is None or not stored.username:
            raise ImageError(f"not logged into {key}")
        _out(f"{stored.username}\n")
        return 0
    if stored is not None and stored.identity_token:
        raise ImageError("currently logged in, auth file contains an Identity token")
    password: str | None = args.password
    if args.password_stdin:
        if args.password:
            raise ImageError("Can't specify both --password-stdin and --password")
        if not args.username:
            raise ImageError("Must provide --username with --password-stdin")
        password = _read_password_stdin()
    if not args.username and not password and stored and stored.username and stored.password:
        _out(f"Authenticating with existing credentials for {key}\n")
        try:
            af.check_credentials(registry, stored.to_credentials(), options)
        except RegistryError:
            _out("Existing credentials are invalid, please enter valid username and password\n")
        else:
            _out(f"Existing credentials are valid. Already logged in to {registry}\n")
            return 0
    creds = _prompt(args.username, password, stored.username if stored else "")
    try:
        af.check_credentials(registry, creds, options)
    except AuthenticationError:
        raise
    except RegistryError as e:
        raise RegistryError(f'authenticating creds for "{key}": {e}', status=e.status) from e
    where = af.write_credentials(key, creds, authfile)
    if args.verbose:
        _out(f"Used:  {where}\n")
    _out("Login Succeeded!\n")
    return 0


def _cmd_logout(args: argparse.Namespace) -> int:
    from ..types import TransportOptions

    af = _docker_module("_authfile")
    RegistryError = _docker_module().RegistryError

    if args.authfile and not os.path.exists(args.authfile):
        raise ImageError(f"checking authfile: {args.authfile}: no such file or directory")
    authfile = _default_authfile(args.authfile)
    if args.all:
        if args.registry:
            raise ImageError("--all takes no arguments")
        af.remove_all(authfile)
        _out("Removed login credentials for all registries\n")
        return 0
    if not args.registry:
        raise ImageError("please provide a registry to logout from")
    key, registry = _login_key(args.registry)
    if af.remove_credentials(key, authfile):
        _out(f"Removed login credentials for {key}\n")
        return 0
    # Credentials in another file of the search path (docker's config): say where they are.
    host, _, repository = key.partition("/")
    stored = af.lookup_credentials(host, repository or None, authfile)
    if stored is not None and stored.username and stored.password:
        options = TransportOptions(tls_verify=args.tls_verify)
        try:
            af.check_credentials(registry, stored.to_credentials(), options)
        except RegistryError:
            pass
        else:
            _out(
                f"Not logged into {key} with current tool. Existing credentials were "
                "established via docker login. Please use docker logout instead.\n"
            )
            return 0
    raise ImageError(f"not logged into {key}")


# -- the parsers ---------------------------------------------------------------------------------
def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    """Add list-tags, delete, login and logout to the command's subparsers."""
    from . import _access_flags, _bool_arg, _retry_flag

    p = sub.add_parser(
        "list-tags",
        parents=common,
        help="list the tags of a repository",
        description="Print the tags of a repository in a registry as JSON, as skopeo "
        "list-tags does, e.g. imagetypes list-tags docker://localhost:5000/busybox",
    )
    p.add_argument("image", metavar="REPOSITORY")
    _access_flags(p, "", "repository's")
    _retry_flag(p)
    p.set_defaults(command=_cmd_list_tags)

    p = sub.add_parser(
        "delete",
        parents=common,
        help="delete an image",
        description="Delete an image (in a registry: its manifest, with every tag of it).",
    )
    p.add_argument("image", metavar="IMAGE")
    _access_flags(p, "", "image's")
    _retry_flag(p)
    p.set_defaults(command=_cmd_delete)

    p = sub.add_parser(
        "login",
        parents=common,
        help="log in to a registry",
        description="Check credentials against REGISTRY and store them in the auth file "
        "(default: $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json).",
    )
    p.add_argument("registry", metavar="REGISTRY")
    p.add_argument("-u", "--username", help="user name for the registry")
    p.add_argument("-p", "--password", help="password for the registry")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--authfile", metavar="PATH", help="the auth file to use")
    p.add_argument("--cert-dir", metavar="DIR", help="certificates for the registry")
    p.add_argument(
        "--tls-verify",
        metavar="BOOL",
        type=_bool_arg,
        help="require HTTPS and verify certificates (--tls-verify=false allows plain http)",
    )
    p.add_argument(
        "--get-login", action="store_true", help="print the user logged in to the registry"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="say where credentials went")
    p.set_defaults(command=_cmd_login)

    p = sub.add_parser(
        "logout",
        parents=common,
        help="log out of a registry",
        description="Remove the credentials stored for REGISTRY (or, with --all, for all).",
    )
    p.add_argument("registry", metavar="REGISTRY", nargs="?")
    p.add_argument("-a", "--all", action="store_true", help="remove every stored credential")
    p.add_argument("--authfile", metavar="PATH", help="the auth file to use")
    p.add_argument(
        "--tls-verify",
        metavar="BOOL",
        type=_bool_arg,
        help="require HTTPS and verify certificates when checking other credentials",
    )
    p.set_defaults(command=_cmd_logout)
