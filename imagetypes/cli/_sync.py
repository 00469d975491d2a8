"""``imagetypes sync``: copy a repository, a registry, a folder of images or a YAML list of
images to a registry or a folder, as ``skopeo sync`` does."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_command"]


def add_command(
    sub: Any,
    common: list[argparse.ArgumentParser],
    *,
    access_flags: Callable[..., None],
    retry_flag: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register ``sync`` (``access_flags`` and ``retry_flag`` are the main parser's helpers)."""
    from ._copyflags import add_compression_flags
    from ._trust import add_sign_flags

    p = sub.add_parser(
        "sync",
        parents=common,
        help="copy every image of a repository, registry, folder or YAML list",
        description="Copy all images from SOURCE to DESTINATION, as skopeo sync does. "
        "SOURCE (--src): docker (REGISTRY/REPO for every tag, REGISTRY/REPO:TAG, or REGISTRY "
        "for its whole catalog), dir (a folder of image directories) or yaml (a skopeo-sync "
        "YAML file). DESTINATION (--dest): docker (REGISTRY[/NAMESPACE]) or dir (a folder). "
        "Images the destination already holds are not copied again (unless they are signed "
        "on the way: --sign-by, --sign-by-sigstore-private-key sign every image synced, as "
        "its destination reference).",
    )
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("destination", metavar="DESTINATION")
    p.add_argument(
        "-s", "--src", required=True, choices=("docker", "dir", "yaml"), help="SOURCE kind"
    )
    p.add_argument(
        "-d", "--dest", required=True, choices=("docker", "dir"), help="DESTINATION kind"
    )
    p.add_argument(
        "-a", "--all", action="store_true", help="copy every image of an index, and the index"
    )
    p.add_argument(
        "--scoped",
        action="store_true",
        help="name destination images after their full source name (registry and path)",
    )
    p.add_argument(
        "--append-suffix", default="", metavar="SUFFIX", help="append SUFFIX to destination tags"
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be copied, copy nothing")
    p.add_argument(
        "--keep-going", action="store_true", help="go on when an image fails (exit status 1)"
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=4,
        metavar="N",
        help="images copied at the same time (default 4)",
    )
    p.add_argument(
        "-f",
        "--format",
        choices=("oci", "v2s2", "v2s1"),
        help="manifest format to write (default: keep the source's if possible)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="report no progress")
    p.add_argument("--remove-signatures", action="store_true", help="do not copy signatures")
    p.add_argument(
        "--digestfile",
        metavar="PATH",
        help="write 'DIGEST DESTINATION' of every image synced to PATH, one per line",
    )
    add_compression_flags(p)
    add_sign_flags(p, copy=False)
    p.add_argument(
        "--authfile",
        metavar="PATH",
        help="auth.json with credentials (default: $REGISTRY_AUTH_FILE, ...)",
    )
    access_flags(p, "src-", "source")
    access_flags(p, "dest-", "destination")
    retry_flag(p)
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    """Run ``imagetypes sync``; the summary goes to stderr, stdout stays empty."""
    from ..copy import CopyOptions, SyncError, SyncOptions, sync
    from . import FlagError, _transport_options
    from ._copyflags import compression_options, make_progress
    from ._trust import load_policy, sign_options

    if args.jobs < 1:
        raise FlagError("--jobs must be at least 1")
    policy = None if args.dry_run else load_policy(args)
    signing = {} if args.dry_run else sign_options(args)
    renderer = make_progress(args.quiet or args.dry_run, sys.stderr, args.progress_interval)
    try:
        copy_options = CopyOptions(
            policy=policy,
            format=args.format,
            progress=renderer,
            source_options=_transport_options(args, "src_"),
            destination_options=_transport_options(args, "dest_"),
            remove_signatures=args.remove_signatures,
            **signing,
            **compression_options(args),
        )
    except ValueError as e:
        if renderer is not None:
            renderer.close()
        raise FlagError(str(e)) from None
    options = SyncOptions(
        all=args.all,
        scoped=args.scoped,
        append_suffix=args.append_suffix,
        dry_run=args.dry_run,
        keep_going=args.keep_going,
        concurrency=args.jobs,
        copy_options=copy_options,
    )
    try:
        report = sync(
            args.source,
            args.destination,
            source_kind=args.src,
            destination_kind=args.dest,
            options=options,
        )
    except SyncError as e:
        if e.report is not None:
            _summarise(e.report, args)
        raise
    finally:
        if renderer is not None:
            renderer.close()
    _summarise(report, args)
    return 0 if report.ok else 1


def _summarise(report: Any, args: argparse.Namespace) -> None:
    from ..copy import SyncReport

    assert isinstance(report, SyncReport)
    for image in report.images:
        if image.status == "planned":
            sys.stderr.write(f"Would copy {image.source} to {image.destination}\n")
        elif image.status == "failed":
            sys.stderr.write(f"Failed to copy {image.source}: {image.error}\n")
    if args.digestfile and not args.dry_run:
        with open(args.digestfile, "w", encoding="utf-8") as f:
            for image in report.images:
                if image.digest is not None:
                    f.write(f"{image.digest} {image.destination}\n")
    if args.dry_run:
        sys.stderr.write(f"Would sync {len(report.images)} images\n")
    else:
        sys.stderr.write(
            f"Synced {len(report.images)} images: {len(report.copied)} copied, "
            f"{len(report.unchanged)} already up to date, {len(report.failed)} failed\n"
        )
    sys.stderr.flush()
