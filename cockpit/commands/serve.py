"""`cockpit serve`: the monitor of one run in a web browser, through textual-serve.

    cockpit serve [RUN_DIR|latest] [--host 127.0.0.1] [--port 8000] [--allow-control]

The server is an aiohttp app (textual-serve's): its page draws a terminal and
its websocket drives a process that runs the monitor. Each visitor's page gets
a process of its own, and that process attaches to the run the way `cockpit
watch` does: it reads the run directory, it never starts a trainer. A wrapped
run's adapter (its stdout turned into events) runs once, here in the server.

Safe by default:
- bound to 127.0.0.1 unless --host says otherwise;
- every request needs the random token printed at start: `?token=` on the page's
  URL (the page then holds it in a cookie for its scripts, styles and
  websocket, and the websocket's path carries it too); without it, 403;
- a websocket opened from another site's page (its Origin is not this server) is 403;
- read-only: the save, stop and dump keys are not offered unless --allow-control.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cockpit.commands.follow import parse_health, run_dir_or_say

if TYPE_CHECKING:
    from argparse import Namespace

    from aiohttp import web

MAX_VISITORS = 4  # pages open at once: each is a monitor process reading the run
COOKIE = "cockpit-serve-{port}"  # cookies are per host, not per port: two servers, two names


# -----------------------------------------------------------------------------
# the command


def cmd_serve(args: Namespace) -> int:
    run_dir = run_dir_or_say(args.run)
    if run_dir is None:
        return 2
    if parse_health(args.health) is None:
        return 2
    run_dir = run_dir.resolve()
    if args.visitor:
        return _visit(run_dir, args)
    return _serve(run_dir, args)


def visitor_command(run_dir: Path, args: Namespace) -> str:
    """The shell command textual-serve starts for each page: this command, as a visitor."""
    cmd = [sys.executable, "-m", "cockpit.cli", "serve", str(run_dir), "--visitor"]
    cmd += ["--allow-control"] if args.allow_control else []
    for h in args.health:
        cmd += ["--health", h]
    return shlex.join(cmd)


def _serve(run_dir: Path, args: Namespace) -> int:
    from cockpit.supervisor import Trainer
    from cockpit.wrap.wrapped import attach_wrapped

    token = secrets.token_urlsafe(24)
    adapting = attach_wrapped(run_dir, Trainer.find(run_dir))  # a wrapped run: one adapter
    if adapting is not None:
        adapting.start()
    try:
        return asyncio.run(_main(run_dir, args, token))
    except OSError as e:  # the port is taken, the host is not ours, …
        print(
            f"error: cannot serve on {args.host}:{args.port}: {e.strerror or e}; "
            "choose another with --port (0: any free one) or --host",
            file=sys.stderr,
        )
        return 2
    finally:
        if adapting is not None:
            adapting.stop()


async def _main(run_dir: Path, args: Namespace, token: str) -> int:
    from aiohttp import web

    server = make_server(visitor_command(run_dir, args), token, title=f"cockpit · {run_dir.name}")
    runner = web.AppRunner(await server.make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = _bound_port(runner)
    server.set_port(port)
    host = args.host
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    print(
        f"cockpit: serving {run_dir.name} ({'read-write' if args.allow_control else 'read-only'})"
    )
    print(f"cockpit: open http://{shown}:{port}/?token={token}", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"cockpit: bound to {host}: anyone who can reach this machine and has the URL can watch"
        )
    print("cockpit: Ctrl+C stops serving (the run goes on)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await site.stop()  # no new page
    await server.close_pages()
    await runner.cleanup()
    print("cockpit: stopped serving; the run goes on", flush=True)
    return 0


def _bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:  # (host, port) or (host, port, flow, scope)
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    raise OSError("no address bound")


# -----------------------------------------------------------------------------
# the server: textual-serve's, behind a token


def make_server(command: str, token: str, *, title: str) -> Any:
    """A textual-serve Server whose every route needs `token` (lazy: aiohttp and
    textual-serve load only when serving)."""
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server

    class TokenServer(Server):
        def __init__(self) -> None:
            super().__init__(command, title=title)
            self.token = token
            self.cookie = COOKIE.format(port=0)
            self.pages: set[asyncio.Task] = set()  # each open page's websocket handler

        def set_port(self, port: int) -> None:
            self.port, self.cookie = port, COOKIE.format(port=port)

        async def make_app(self) -> web.Application:
            app = web.Application(middlewares=[self.guard])
            aiohttp_jinja2.setup(app, loader=_page(self.templates_path))
            app.add_routes(
                [
                    web.get("/", self.index, name="index"),
                    web.get("/ws/{token}", self.websocket, name="websocket"),
                    web.get("/download/{key}", self.handle_download, name="download"),
                    web.static("/static", self.statics_path, name="static"),
                ]
            )
            return app

        def allowed(self, request: web.Request) -> bool:
            given = (
                request.match_info.get("token")
                or request.query.get("token")
                or request.cookies.get(self.cookie)
                or ""
            )
            return hmac.compare_digest(given.encode(), self.token.encode())

        @web.middleware
        async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
            if not self.allowed(request):
                return web.Response(
                    status=403,
                    text="403 Forbidden: this cockpit needs its token. Open the URL that "
                    "`cockpit serve` printed when it started (…/?token=…).\n",
                )
            origin = request.headers.get("Origin")
            if origin and urlsplit(origin).netloc != request.host:
                return web.Response(status=403, text="403 Forbidden: another site's page.\n")
            response = await handler(request)
            if request.path == "/" and request.query.get("token"):
                response.set_cookie(
                    self.cookie, self.token, httponly=True, samesite="Strict", path="/"
                )
            return response

        async def index(self, request: web.Request) -> web.StreamResponse:
            scheme = "wss" if request.secure else "ws"
            context = {
                "font_size": _int(request.query.get("fontsize"), 16),
                "app_websocket_url": f"{scheme}://{request.host}/ws/{self.token}",
                "config": {"static": {"url": f"{request.scheme}://{request.host}/static/"}},
                "application": {"name": self.title},
            }
            response = aiohttp_jinja2.render_template("app_index.html", request, context)
            response.headers["Cache-Control"] = "no-store"  # the page holds the token
            response.headers["Referrer-Policy"] = "no-referrer"
            return response

        async def websocket(self, request: web.Request) -> web.StreamResponse:
            if len(self.pages) >= MAX_VISITORS:
                return web.Response(
                    status=503,
                    text=f"503: {MAX_VISITORS} pages already watch this run; close one\n",
                )
            task = asyncio.current_task()
            assert task is not None
            self.pages.add(task)
            try:
                return await self.handle_websocket(request)
            finally:
                self.pages.discard(task)

        async def close_pages(self) -> None:
            """Stopping: end every page's monitor (their handlers close the sockets and
            tell the monitors to quit) instead of waiting for the pages to leave."""
            pages = list(self.pages)
            for t in pages:
                t.cancel()
            await asyncio.gather(*pages, return_exceptions=True)

    return TokenServer()


# textual-serve's page asks a font of a web font service; ours serves the same font
# (shipped in textual-serve's static/fonts): the page makes no request off this machine
WEB_FONT = re.compile(r"<link[^<>]{0,300}fonts\.googleapis\.com[^<>]{0,300}>")
LOCAL_FONT = """<style>
      @font-face { font-family: "Roboto Mono"; font-weight: 100 700;
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf"); }
    </style>"""


def _page(templates: Path) -> Any:
    """textual-serve's page template, its web font replaced by the local one."""
    import jinja2

    page = (templates / "app_index.html").read_text()
    return jinja2.DictLoader({"app_index.html": WEB_FONT.sub(LOCAL_FONT, page, count=1)})


def _int(text: str | None, default: int) -> int:
    try:
        return max(6, min(48, int(text or default)))
    except ValueError:
        return default


# -----------------------------------------------------------------------------
# one visitor's page: the monitor, attached to the run (the process textual-serve starts)


def _visit(run_dir: Path, args: Namespace) -> int:
    from cockpit.session import Session
    from cockpit.supervisor import Trainer
    from cockpit.ui.app import CockpitApp

    health = parse_health(args.health)
    session = Session(run_dir, Trainer.find(run_dir), health)
    app = CockpitApp("monitor", session=session, control=args.allow_control)
    app.run()  # nothing is printed after: stdout is the page's channel
    return 0
