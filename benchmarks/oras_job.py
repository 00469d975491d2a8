"""One oras-py (PyPI ``oras``) push or pull, run as a child process by the benchmark.

    python oras_job.py push TMP HOST REPO:TAG FILE...   push the files as the layers of an artifact
    python oras_job.py pull TMP HOST REPO:TAG OUTDIR    pull every layer of REPO:TAG into OUTDIR

Plain HTTP (``insecure=True``): the benchmark's registry listens on 127.0.0.1 without TLS.
TMP is the job's temporary folder, which the benchmark removes after the run (untimed): oras-py
leaves its ``oras-tmp.*`` folders behind, a copy of the image each, which filled the disk.
"""

from __future__ import annotations

import os
import sys
import tempfile

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def main(argv: list[str]) -> int:
    command, tmp, host, target, *rest = argv
    os.makedirs(tmp, exist_ok=True)
    tempfile.tempdir = tmp  # where oras-py makes (and leaves) its temporary folders
    import oras.client  # type: ignore[import-not-found,import-untyped,unused-ignore]

    client = oras.client.OrasClient(hostname=host, insecure=True)
    if command == "push":
        files = [f"{os.path.abspath(path)}:{LAYER_TYPE}" for path in rest]
        client.push(
            target=f"{host}/{target}", files=files, disable_path_validation=True, quiet=True
        )
    elif command == "pull":
        (outdir,) = rest
        pulled = client.pull(target=f"{host}/{target}", outdir=outdir)
        if not pulled:
            print("oras pulled nothing", file=sys.stderr)
            return 1
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
