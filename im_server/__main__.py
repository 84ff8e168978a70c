"""``im-server``: run a node, apply migrations, or mint a token.

im-server migrate                 apply pending schema migrations (IM_DATABASE_URL)
im-server serve --host H --port P run a node until SIGTERM, then drain and exit 0
im-server token --user U          print a JWT signed with IM_JWT_SECRET
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys

from im_server.config import ConfigError, from_env


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="im-server", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run a node")
    serve.add_argument("--host", default=os.environ.get("IM_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=os.environ.get("IM_PORT", "8080"))
    serve.add_argument("--ready-file", help="write the bound port here once listening")
    serve.add_argument(
        "--health-port", type=int, help="also serve on this node-private port (status, probes)"
    )
    serve.add_argument(
        "--global-port", type=int, help="also serve on this shared port (the global endpoint)"
    )
    sub.add_parser("migrate", help="apply pending schema migrations")
    tok = sub.add_parser("token", help="mint a user token")
    tok.add_argument("--user", required=True)
    tok.add_argument("--ttl", type=int, default=3600)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("IM_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.cmd == "token":
        from im_server import auth

        secret = os.environ.get("IM_JWT_SECRET", "")
        if len(secret) < 16:
            print("im-server: IM_JWT_SECRET must be set (at least 16 characters)", file=sys.stderr)
            return 2
        print(auth.mint(secret, args.user, args.ttl))
        return 0
    try:
        settings = from_env()
    except ConfigError as exc:
        print(f"im-server: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "migrate":
        from im_server.migrate import migrate

        applied = asyncio.run(migrate(settings.database_url))
        print(
            f"applied {len(applied)} migration(s)"
            + "".join(f"\n  {m.version:04d} {m.name}" for m in applied)
        )
        return 0
    from im_server.server import serve

    # One socket per session: the usual soft limit (1,024) caps a node long before memory does.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(
        serve(settings, args.host, args.port, args.ready_file, args.health_port, args.global_port)
    )


if __name__ == "__main__":
    sys.exit(main())
