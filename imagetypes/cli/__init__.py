"""The ``imagetypes`` command: skopeo-like copy, inspect, list-tags, delete, login, logout,
sync, manifest-digest, standalone-sign, standalone-verify, generate-sigstore-key and
transports.

``copy`` and ``sync`` apply the signature policy as skopeo does: ``--policy FILE``, else the
user's or the system's ``policy.json`` (an error when there is none), unless
``--insecure-policy`` is given.

The command is a thin layer: it maps flags to the library's option objects and prints what the
library returns. Exit status: 0 on success, 1 when an operation fails (one line on stderr,
``imagetypes: error: ...``; ``--debug`` adds the traceback), 2 for usage errors, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from .. import __version__
from ..errors import ImageError
from . import _copyflags, _registry, _sync, _trust

if TYPE_CHECKING:
    from ..platform import Platform
    from ..types import Credentials, TransportOptions

# Start-up time is part of every command's run (a copy between two layouts takes a fraction
# of a second), so this module and the parser it builds import only what parsing needs; each
# command imports the library parts it uses when it runs (tests/unit/test_startup.py).

__all__ = ["main", "run"]

PROG = "imagetypes"

log = logging.getLogger("imagetypes.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(_bare_bool_flags(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    debug = bool(getattr(args, "debug", False))
    previous_level = logging.getLogger("imagetypes").level
    handler = _setup_logging(debug)
    try:
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except FlagError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
    except BrokenPipeError:
        # The reader went away (``imagetypes inspect ... | head``): not worth a message.
        _silence_stdout()
        return 1
    except (ImageError, OSError) as e:
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"{PROG}: error: {_one_line(e)}\n")
        return 1
    finally:
        logger = logging.getLogger("imagetypes")
        logger.removeHandler(handler)
        if debug:
            logger.setLevel(previous_level)


def run() -> NoReturn:
    """The ``imagetypes`` program: :func:`main`, then an exit that skips the interpreter's teardown.

    Python's ordinary exit frees every object of every loaded module one by one: 25-40 ms of
    CPU, measured, after a command that may itself take 40 ms (a copy by cross-repository
    mount). Once :func:`main` has returned nothing is left whose clean-up matters: the
    command's files, connections and temporary folders are closed by their with-blocks, and
    the ``atexit`` handlers (logging's flush, a coverage tool's data) are run here, then
    standard output and error are flushed. The exit stays the ordinary one wherever skipping
    the teardown could lose something: a thread that is not a daemon still runs (an ordinary
    exit waits for it), a tracer or profiler is attached (it reports at exit), or the
    interpreter is to go on interactively (``python -i``).
    """
    status = main()
    if _teardown_wanted():
        sys.exit(status)
    atexit._run_exitfuncs()
    os._exit(_flush_output(status))


def _teardown_wanted() -> bool:
    """Whether the process must end with an ordinary exit (see :func:`run`)."""
    if sys.flags.inspect or sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)  # Python 3.12: profilers and coverage
    if monitoring is not None and any(monitoring.get_tool(i) is not None for i in range(6)):
        return True
    main_thread = threading.main_thread()
    return any(t is not main_thread and not t.daemon for t in threading.enumerate())


def _flush_output(status: int) -> int:
    """Flush standard output and error before an exit that will not; the exit status after.

    Output that cannot be written fails a command that had succeeded: with status 1 and one
    line, or silently where the reader went away (as :func:`main` treats that). A command that
    failed has said why already (often this very write). A stream Python could not open (its
    file descriptor was closed when the program started) is ``None``: nothing to flush.
    """
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        status = status or 1
    except (OSError, ValueError) as e:
        if status == 0:
            status = 1
            # Where stderr is gone too, there is no stream left to tell: the status says it.
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"{PROG}: error: could not write the output: {e}\n")
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        status = status or 1
    return status


# -- helpers ----------------------------------------------------------------------------------


class FlagError(ImageError):
    """Flags that parse but do not go together (``--creds`` with ``--username``)."""


_BOOL_FLAGS = frozenset({"--tls-verify", "--src-tls-verify", "--dest-tls-verify"})


def _bare_bool_flags(argv: Sequence[str]) -> list[str]:
    """Spell a bare ``--tls-verify`` as ``--tls-verify=true``.

    As in skopeo, the flag alone means true and a value needs ``=`` (``--tls-verify=false``),
    so an image name after a bare flag is never taken for its value.
    """
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[i:])
        out.append(f"{arg}=true" if arg in _BOOL_FLAGS else arg)
    return out


class _PlainFormatter(logging.Formatter):
    """``imagetypes: warning: message``, like the error lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(debug: bool) -> logging.Handler:
    """Show the library's warnings (and with ``--debug`` everything) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_PlainFormatter())
        handler.setLevel(logging.WARNING)
    logger = logging.getLogger("imagetypes")
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)
    return handler


def _one_line(error: BaseException) -> str:
    message = str(error) or type(error).__name__
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in message:
        message = f"{message}: {cause}"
    return " ".join(message.split())


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a real file (captured); nothing to silence


def _write_stdout(data: bytes) -> None:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        sys.stdout.write(data.decode("utf-8", errors="replace"))
        sys.stdout.flush()


def _print_json(obj: object) -> None:
    _write_stdout((_marshal_indent(obj) + "\n").encode("utf-8"))


def _marshal_indent(obj: object, indent: str = "    ") -> str:
    """``obj`` as JSON, formatted like Go's ``json.MarshalIndent(obj, "", indent)``, so our
    output matches skopeo's byte for byte. Objects keep their insertion order: callers sort the
    keys of what Go holds as maps."""
    parts: list[str] = []
    _write_json(obj, parts, indent, 0)
    return "".join(parts)


def _write_json(obj: object, out: list[str], indent: str, level: int) -> None:
    from ..manifest._gojson import quote

    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(quote(obj))
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"JSON cannot represent {obj!r}")
        out.append(str(int(obj)) if obj.is_integer() and abs(obj) < 1e21 else repr(obj))
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        inner = "\n" + indent * (level + 1)
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            out.append(("," if i else "") + inner + quote(str(key)) + ": ")
            _write_json(value, out, indent, level + 1)
        out.append("\n" + indent * level + "}")
    elif isinstance(obj, list | tuple):
        if not obj:
            out.append("[]")
            return
        inner = "\n" + indent * (level + 1)
        out.append("[")
        for i, value in enumerate(obj):
            out.append(("," if i else "") + inner)
            _write_json(value, out, indent, level + 1)
        out.append("\n" + indent * level + "]")
    else:
        raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _platform_arg(text: str) -> Platform:
    from ..platform import Platform

    try:
        return Platform.parse(text)
    except ImageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _bool_arg(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _credentials_arg(text: str) -> Credentials:
    from ..types import Credentials

    try:
        return Credentials.parse(text)
    except ImageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _override_platform(args: argparse.Namespace) -> Platform | None:
    os_name = getattr(args, "override_os", None)
    arch = getattr(args, "override_arch", None)
    variant = getattr(args, "override_variant", None)
    if not (os_name or arch or variant):
        return None
    from ..platform import Platform

    current = Platform.current()
    return Platform(
        os_name or current.os,
        arch or current.architecture,
        variant if variant else (current.variant if not arch else None),
    )


def _credentials_from_flags(args: argparse.Namespace, prefix: str) -> Credentials | None:
    """``--creds`` or ``--username``/``--password``, checked as skopeo checks them."""
    flag = "--" + prefix.replace("_", "-")
    creds = getattr(args, prefix + "creds", None)
    username = getattr(args, prefix + "username", None)
    password = getattr(args, prefix + "password", None)
    no_creds = bool(getattr(args, prefix + "no_creds", False))
    if creds is not None and username is not None:
        raise FlagError(f"{flag}creds and {flag}username cannot be specified at the same time")
    if creds is not None and password is not None:
        raise FlagError(f"{flag}creds and {flag}password cannot be specified at the same time")
    if (username is None) != (password is None):
        raise FlagError(f"{flag}username and {flag}password must be specified together")
    from ..types import Credentials

    if username is not None:
        assert password is not None
        creds = Credentials(username, password)
    if creds is not None and no_creds:
        raise FlagError(f"{flag}creds and {flag}no-creds cannot be specified at the same time")
    return creds if isinstance(creds, Credentials) else None


def _transport_options(args: argparse.Namespace, prefix: str = "") -> TransportOptions:
    """The options one side of a command's flags ask for (``prefix`` ``src_`` / ``dest_``)."""
    from ..retry import RetryPolicy
    from ..types import TransportOptions

    def get(name: str) -> object:
        return getattr(args, prefix + name, None)

    tls_verify = get("tls_verify")
    # copy's --authfile is shared; --src-authfile / --dest-authfile override it per side.
    authfile = get("authfile") or getattr(args, "authfile", None)
    retry_times = getattr(args, "retry_times", None)
    return TransportOptions(
        platform=_override_platform(args),
        tls_verify=tls_verify if isinstance(tls_verify, bool) else None,
        credentials=_credentials_from_flags(args, prefix),
        authfile=str(authfile) if authfile else None,
        cert_dir=str(get("cert_dir")) if get("cert_dir") else None,
        no_creds=bool(get("no_creds")),
        registry_token=str(get("registry_token")) if get("registry_token") else None,
        retry=RetryPolicy(attempts=retry_times) if isinstance(retry_times, int) else RetryPolicy(),
        extra=_trust.transport_extra(args),
    )


# -- commands ---------------------------------------------------------------------------------


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ..image import open_image, read_manifest

    options = _transport_options(args)
    if args.raw and not args.config:
        raw, _media_type = read_manifest(args.image, options=options)
        _write_stdout(raw)
        return 0
    with open_image(args.image, options=options) as image:
        if args.config and args.raw:
            _write_stdout(image.raw_config())
        elif args.config:
            _print_json(image.oci_config())
        else:
            _print_json(image.inspect(list_tags=not args.no_tags))
    return 0


def _cmd_copy(args: argparse.Namespace) -> int:
    import attrs

    from ..copy import CopyOptions, InstanceSelection, copy_image
    from ._copyflags import compression_options, make_progress

    instances: InstanceSelection | str
    if args.all:
        instances = "all"
    elif args.platform:
        instances = tuple(args.platform)
    else:
        instances = args.multi_arch or "system"
    policy = _trust.load_policy(args)
    destination_options = _transport_options(args, "dest_")
    tags = _trust.additional_tags(args)
    if tags:
        extra = dict(destination_options.extra)
        extra["docker-archive.additional_tags"] = tuple(tags)
        destination_options = attrs.evolve(destination_options, extra=extra)
    signing = _trust.sign_options(args)
    renderer = make_progress(args.quiet, sys.stderr, args.progress_interval)
    try:
        options = CopyOptions(
            instances=instances,
            format=args.format,
            progress=renderer,
            source_options=_transport_options(args, "src_"),
            destination_options=destination_options,
            remove_signatures=args.remove_signatures,
            policy=policy,
            **signing,
            **compression_options(args),
        )
    except ValueError as e:
        if renderer is not None:
            renderer.close()
        raise FlagError(str(e)) from None
    try:
        result = copy_image(args.source, args.destination, options)
    finally:
        if renderer is not None:
            renderer.close()
    if args.digestfile:
        with open(args.digestfile, "w", encoding="utf-8") as f:
            f.write(str(result.manifest_digest))
    return 0


def _cmd_manifest_digest(args: argparse.Namespace) -> int:
    from ..image import manifest_digest

    with open(args.file, "rb") as f:
        data = f.read()
    _write_stdout(f"{manifest_digest(data)}\n".encode())
    return 0


def _cmd_transports(args: argparse.Namespace) -> int:
    from ..plugins import list_transports

    infos = list_transports()
    width = max((len(i.name) for i in infos), default=0)
    lines = "".join(f"{i.name:<{width}}  {i.origin}\n" for i in infos)
    _write_stdout(lines.encode("utf-8"))
    return 0


# -- the parser -------------------------------------------------------------------------------


def _global_flags(*, top: bool) -> argparse.ArgumentParser:
    """Flags accepted before the subcommand (as skopeo's) and, for convenience, after it.

    The subcommands' copies default to SUPPRESS so they never overwrite a value given before
    the subcommand.
    """
    default: object = None if top else argparse.SUPPRESS
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("global options")
    group.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log debug messages and show tracebacks of errors",
    )
    group.add_argument(
        "--override-os",
        metavar="OS",
        default=default,
        help="use OS instead of this machine's when choosing an image",
    )
    group.add_argument(
        "--override-arch",
        metavar="ARCH",
        default=default,
        help="use ARCH instead of this machine's when choosing an image",
    )
    group.add_argument(
        "--override-variant",
        metavar="VARIANT",
        default=default,
        help="use VARIANT instead of this machine's when choosing an image",
    )
    _trust.add_global_flags(group, default, top)
    return flags


def _retry_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"the count must not be negative: {value}")
    return value


def _retry_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-times",
        dest="retry_times",
        metavar="N",
        type=_retry_count,
        help="retry failed requests and transfers N times (default: the library's policy)",
    )


def _authfile_flag(parser: argparse.ArgumentParser, prefix: str = "", what: str = "") -> None:
    dest = prefix.replace("-", "_")
    parser.add_argument(
        f"--{prefix}authfile",
        dest=f"{dest}authfile",
        metavar="PATH",
        help=f"auth.json with credentials for the {what}registry "
        "(default: $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, ...)",
    )


def _access_flags(
    parser: argparse.ArgumentParser, prefix: str, what: str, *, authfile: bool = True
) -> None:
    """Credentials and TLS flags for one side (``--creds`` or ``--src-creds`` ...)."""
    dest = prefix.replace("-", "_")
    parser.add_argument(
        f"--{prefix}creds",
        dest=f"{dest}creds",
        metavar="USER[:PASS]",
        type=_credentials_arg,
        help=f"credentials for the {what} registry",
    )
    parser.add_argument(
        f"--{prefix}username",
        dest=f"{dest}username",
        metavar="USER",
        help=f"user name for the {what} registry (with --{prefix}password)",
    )
    parser.add_argument(
        f"--{prefix}password",
        dest=f"{dest}password",
        metavar="PASS",
        help=f"password for the {what} registry (with --{prefix}username)",
    )
    if authfile:
        _authfile_flag(parser, prefix, f"{what} ")
    parser.add_argument(
        f"--{prefix}cert-dir",
        dest=f"{dest}cert_dir",
        metavar="DIR",
        help=f"certificates (*.crt, *.cert, *.key) for the {what} registry",
    )
    parser.add_argument(
        f"--{prefix}no-creds",
        dest=f"{dest}no_creds",
        action="store_true",
        help=f"access the {what} registry without credentials",
    )
    parser.add_argument(
        f"--{prefix}registry-token",
        dest=f"{dest}registry_token",
        metavar="TOKEN",
        help=f"bearer token for the {what} registry",
    )
    parser.add_argument(
        f"--{prefix}tls-verify",
        dest=f"{dest}tls_verify",
        metavar="BOOL",
        type=_bool_arg,
        help=f"require HTTPS and verify certificates of the {what} registry "
        f"(--{prefix}tls-verify=false allows plain http)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Move and inspect container images in registries, OCI layouts and folders.",
        parents=[_global_flags(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"{PROG} version {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    common = [_global_flags(top=False)]

    p = sub.add_parser(
        "copy",
        parents=common,
        help="copy an image from SOURCE to DESTINATION",
        description="Copy an image (or images of an index) from SOURCE to "
        "DESTINATION, e.g. imagetypes copy oci:./layout:1.0 dir:./out",
    )
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("destination", metavar="DESTINATION")
    selection = p.add_mutually_exclusive_group()
    selection.add_argument(
        "-a", "--all", action="store_true", help="copy every image of an index, and the index"
    )
    selection.add_argument(
        "--platform",
        action="append",
        type=_platform_arg,
        metavar="OS/ARCH[/VARIANT]",
        help="copy the image for this platform from an index (repeatable)",
    )
    selection.add_argument(
        "--multi-arch",
        choices=("system", "all", "index-only"),
        help="which images of an index to copy (default: system; index-only: the index alone)",
    )
    p.add_argument(
        "-f",
        "--format",
        choices=("oci", "v2s2", "v2s1"),
        help="manifest format to write (default: keep the source's if possible; v2s1: Docker "
        "schema 1, signed with an ephemeral key when 'cryptography' is installed)",
    )
    _copyflags.add_compression_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="report no progress")
    p.add_argument("--remove-signatures", action="store_true", help="do not copy signatures")
    _trust.add_sign_flags(p)
    p.add_argument(
        "--digestfile", metavar="PATH", help="write the digest of the written manifest to PATH"
    )
    _authfile_flag(p)
    _access_flags(p, "src-", "source")
    _access_flags(p, "dest-", "destination")
    _retry_flag(p)
    p.set_defaults(command=_cmd_copy)

    p = sub.add_parser(
        "inspect",
        parents=common,
        help="print what an image is made of",
        description="Print information about an image as JSON, as skopeo inspect does.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument(
        "--raw",
        action="store_true",
        help="print the manifest (or, with --config, the config) bytes as stored",
    )
    p.add_argument("--config", action="store_true", help="print the image config")
    p.add_argument(
        "-n",
        "--no-tags",
        action="store_true",
        help="do not list the repository's tags (RepoTags) for an image in a registry",
    )
    _access_flags(p, "", "image's")
    _retry_flag(p)
    p.set_defaults(command=_cmd_inspect)

    _registry.add_commands(sub, common)
    _trust.add_commands(sub, common)
    _sync.add_command(sub, common, access_flags=_access_flags, retry_flag=_retry_flag)

    p = sub.add_parser("manifest-digest", parents=common, help="print a manifest file's digest")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(command=_cmd_manifest_digest)

    p = sub.add_parser("transports", parents=common, help="list the installed transports")
    p.set_defaults(command=_cmd_transports)
    return parser
