"""``python -m serve EXPORT_DIR [--host H] [--port P]``: HTTP server and gallery."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from serve.server import MAX_GRID, MAX_SAMPLES, make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serve",
        description="Serve exported generators over HTTP (gallery at /).",
    )
    parser.add_argument("export_dir", help="export directory (task_XX/manifest.json)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default loopback only)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port (0: any free port)"
    )
    parser.add_argument(
        "--max-grid", type=int, default=MAX_GRID, help="max n of a grid"
    )
    parser.add_argument(
        "--max-samples", type=int, default=MAX_SAMPLES, help="max n of /api/samples"
    )
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        server = make_server(
            args.export_dir,
            args.host,
            args.port,
            max_grid=args.max_grid,
            max_samples=args.max_samples,
            quiet=not args.verbose,
            threads=args.threads,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(
            f"warning: listening on {host}, reachable from other machines",
            file=sys.stderr,
        )
    print(f"serving {args.export_dir} on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
