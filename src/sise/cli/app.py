"""``sise app``: serve the page of :mod:`sise.web` on this computer.

The command is here, with the other commands' arguments, so that the web package needs nothing
from the command line: the dependency points one way, ``sise.cli`` → ``sise.web``.
"""

from __future__ import annotations

import argparse

from sise.cli.arguments import resolve_device

#: The page's port (:data:`sise.web.server.DEFAULT_PORT`, checked equal by a test), written out
#: here so that ``sise --help`` does not import the page's server, and through it torch.
DEFAULT_PORT = 8765


def add_app_command(commands: argparse._SubParsersAction) -> None:
    """Add ``sise app`` to the command line's sub-commands."""
    app = commands.add_parser(
        "app",
        help="a page on this computer to explore one photo's explanation",
        description="Serve a page on http://127.0.0.1:PORT/ to pick or upload a photo, choose a "
        "model and a method, and see the prediction, the map over the photo and SISE's "
        "per-layer maps and gates. Works offline with the demo model.",
    )
    app.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: free)"
    )
    app.add_argument(
        "--device",
        help="where the models run: cpu, cuda, cuda:N or mps (default: cuda when torch sees a "
        "GPU, else cpu)",
    )
    app.add_argument("--open", action="store_true", help="open the page in the default browser")
    app.set_defaults(handler=command_app)


def command_app(args: argparse.Namespace) -> int:
    """``sise app``: serve the page."""
    from sise.web.server import serve

    resolve_device(args)
    serve(args.port, args.device, args.open)
    return 0
