"""[I/O] ``nst-jax studio``: the local web app (:mod:`nst_jax.studio`)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import secrets
import socket
import sys

from nst_jax.cli.common import CliError, load_weights_arg, positive_int, ranged

DESCRIPTION = """Start the studio, a local web app: pick or upload images, watch the image take
shape with its cost curves, run alpha/beta sweeps as one program, browse the gallery of
finished runs (the CLI's too, in the same folder). Needs: pip install 'nst-jax[studio]'.

Example:
  {prog}                      # http://127.0.0.1:8000/
  {prog} --host 0.0.0.0 --auth-token "$(openssl rand -hex 16)"
"""


def fill_parser(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.description = DESCRIPTION.format(prog=ap.prog)
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this "
                    "machine only; 0.0.0.0 exposes it to the network: use --auth-token)")
    ap.add_argument("--port", type=ranged(positive_int, hi=65535), default=8000,
                    help="TCP port, 1 to 65535 (default: 8000)")
    ap.add_argument("--auth-token", default=None, metavar="TOKEN",
                    help="require this token (the printed URL carries it); 'auto' makes one")
    ap.add_argument("--out", default="out", help="results, uploads and the gallery (default: out)")
    ap.add_argument("--weights", default=None, help="weights .h5 (default: as nst-jax stylize)")
    ap.add_argument("--max-upload-mb", type=ranged(positive_int, hi=100_000), default=20,
                    help="largest upload in MiB (default: 20)")
    ap.add_argument("--max-pixels", type=ranged(positive_int, hi=10**10), default=40_000_000,
                    help="largest uploaded image in pixels (default: 40000000)")
    ap.add_argument("--max-store-mb", type=ranged(positive_int, hi=10**7), default=1024,
                    help="the uploads folder is kept under this many MiB, the oldest uploads "
                         "removed first (default: 1024)")
    return ap


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """The ``studio`` subcommand: serve until Ctrl-C."""
    try:
        import uvicorn

        from nst_jax.studio.app import create_app
    except ImportError as e:
        raise CliError(f"the studio needs its extra: pip install 'nst-jax[studio]' ({e.name} missing)"
                       ) from None
    wpath, params, spec, meta = load_weights_arg(args.weights)
    token = secrets.token_hex(16) if args.auth_token == "auto" else args.auth_token
    if not _loopback(args.host) and not token:
        print(f"warning: binding {args.host} without --auth-token: anyone who can reach this "
              "machine can run jobs, upload images and read the gallery", file=sys.stderr)
    try:
        app = create_app(args.out, params, spec, {"path": str(wpath), "source": meta.get("source")},
                         auth_token=token, max_upload_bytes=args.max_upload_mb << 20,
                         max_pixels=args.max_pixels, max_store_bytes=args.max_store_mb << 20)
    except OSError as e:
        raise CliError(f"--out {args.out}: {e.strerror or e}") from None
    except ValueError as e:
        raise CliError(f"--{str(e).replace('_', '-', 1)}") from None
    sock = listen(args.host, args.port)  # before the banner: a taken port is one error line
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"nst_jax studio: http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
          + f"  (results in {args.out}/; Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, handed to uvicorn, so the address the
    banner prints is the one served, and a port in use is refused before anything
    is printed.

    Raises:
      CliError: the address cannot be bound (in use, not this machine's, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CliError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not a live listener's port
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        why = "already in use (another studio or server?)" if e.errno == errno.EADDRINUSE else (
            e.strerror or str(e))
        raise CliError(f"--port {port}: cannot listen on {host}:{port}: {why}; choose another "
                       "--port") from None
    sock.set_inheritable(True)
    return sock


__all__ = ["fill_parser", "listen", "run"]
