"""``harmono data download``: fetch and verify a dataset explicitly (harmono never downloads on its own)."""

from __future__ import annotations

import argparse

from harmono.data.download import FASHION_MNIST_URL, download_fashion_mnist
from harmono.data.images import FASHION_MNIST_ENV


def _download(args: argparse.Namespace) -> int:
    root = download_fashion_mnist(args.out, args.mirror, progress=not args.no_progress)
    print(f"Fashion-MNIST verified in {root}; use it with {FASHION_MNIST_ENV}={root}")
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono data download`` to the top-level parser's subcommands ``sub``."""
    data = sub.add_parser("data", help="fetch a dataset explicitly (harmono never downloads on its own)")
    commands = data.add_subparsers(dest="data_command", required=True)
    download = commands.add_parser(
        "download", help="download and verify Fashion-MNIST (where the Debian package is not installed)"
    )
    download.add_argument("dataset", choices=("fashion-mnist",), help="dataset to fetch")
    download.add_argument("--out", required=True, help="folder for the IDX files")
    download.add_argument(
        "--mirror",
        default=FASHION_MNIST_URL,
        help=f"URL the file names are appended to (default: {FASHION_MNIST_URL})",
    )
    download.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    download.set_defaults(func=_download)
