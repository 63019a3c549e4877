"""A narrowed Docker API: the worker's only way to the engine.

Mounting the engine's socket into a worker gives whoever controls flow code root on the
host (a privileged container with ``/`` bind-mounted is one request away). The team
stack instead runs this proxy next to the engine: it listens on a socket only the worker
reaches and forwards to the engine the requests :mod:`tasks.sandbox.proxy_policy` allows,
answering 403 with the reason to any other.

One request per client connection: the forwarded request says ``Connection: close``, so
nothing a client sends after it is ever read as a second, unchecked request. An attach
that the engine upgrades to a raw stream is piped both ways (the sandbox's stdin and
output), with the client's half-close passed on so the program sees end-of-file.
"""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from pydantic import BaseModel

from tasks.sandbox.proxy_policy import (
    CONTAINER_ID,
    Ceilings,
    Refused,
    check_container,
    check_create,
    labelled,
    narrowed_filters,
)

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
HEAD_TIMEOUT_S = 30.0
VERSION_PREFIX = re.compile(r"^/v\d+(?:\.\d+)?(?=/)")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
CONTAINER_OPS = {
    ("GET", "json"),
    ("GET", "logs"),
    ("POST", "start"),
    ("POST", "wait"),
    ("POST", "kill"),
    ("POST", "attach"),
    ("DELETE", ""),
}


class Request(BaseModel):
    method: str
    target: str  # as sent, with the query
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def path(self) -> str:
        return VERSION_PREFIX.sub("", unquote(urlsplit(self.target).path))

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

    @property
    def upgrade(self) -> bool:
        return bool(self.header("upgrade"))


def parse_address(address: str) -> tuple[int, str | tuple[str, int]]:
    """``unix:///path`` or ``tcp://host:port`` -> (socket family, address)."""
    if address.startswith("unix://"):
        return socket.AF_UNIX, address.removeprefix("unix://")
    if address.startswith("tcp://"):
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        return socket.AF_INET, (host or "127.0.0.1", int(port))
    raise ValueError(f"an address is unix:///path or tcp://host:port, not {address!r}")


def read_request(sock: socket.socket) -> tuple[Request, bytes]:
    """The request's head and body; bytes read beyond it come back too (none are expected
    before an upgraded attach answers)."""
    head, rest = _read_head(sock)
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise Refused("malformed request line") from exc
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise Refused("malformed header")
        headers.append((name.strip(), value.strip()))
    request = Request(method=method.upper(), target=target, version=version, headers=headers)
    if request.header("transfer-encoding"):
        raise Refused("chunked request bodies are not allowed")
    length = int(request.header("content-length") or 0)
    if length > MAX_BODY:
        raise Refused("request body too large")
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise Refused("the request body ended early")
        rest += data
    request.body = rest[:length]
    return request, rest[length:]


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise Refused("request head too large")
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the client hung up")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


class Decision(BaseModel):
    """What to send upstream: the request, maybe rewritten."""

    target: str
    body: bytes


class DockerProxy:
    """Forwards allowed requests from ``listen`` to the engine at ``engine``."""

    def __init__(self, listen: str, engine: str, ceilings: Ceilings | None = None) -> None:
        self.listen = listen
        self.engine = engine
        self.ceilings = ceilings or Ceilings()
        self.server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None
        self.refused: list[str] = []  # the reasons given, newest last (for logs and tests)

    # -- the rules -----------------------------------------------------------------------
    def decide(self, request: Request) -> Decision:
        """The request to forward, or :class:`Refused`."""
        method, path = request.method, request.path
        raw_path = urlsplit(request.target).path
        if any(part in raw_path for part in ("%", "..", "//")) or not raw_path.startswith("/"):
            raise Refused("escaped, relative or doubled paths are not allowed")
        query = urlsplit(request.target).query
        keep = Decision(target=request.target, body=request.body)
        if method in ("GET", "HEAD") and path in ("/_ping", "/version"):
            return keep
        if method == "GET" and path == f"/images/{self.ceilings.image}/json":
            return keep
        if method == "GET" and path == "/containers/json":
            params = dict(parse_qsl(query))
            params["filters"] = narrowed_filters(params.get("filters"), self.ceilings)
            return Decision(target=f"{urlsplit(request.target).path}?{urlencode(params)}", body=b"")
        if method == "POST" and path == "/containers/create":
            try:
                body = json.loads(request.body or b"{}")
            except ValueError as exc:
                raise Refused("the create body is not JSON") from exc
            check_create(body, self.ceilings)
            return Decision(target=request.target, body=labelled(body))
        match = re.fullmatch(r"/containers/([^/]+)(?:/([a-z]+))?", path)
        if match and (method, match.group(2) or "") in CONTAINER_OPS:
            ident = match.group(1)
            if not CONTAINER_ID.match(ident):
                raise Refused("malformed container id")
            check_container(self._inspect(ident), self.ceilings)
            return keep
        raise Refused(f"{method} {path} is not part of the sandbox's API")

    def _inspect(self, ident: str) -> dict:
        """The engine's inspect of a container (empty when it does not exist)."""
        with self._connect() as upstream:
            upstream.sendall(
                f"GET /containers/{ident}/json HTTP/1.1\r\nHost: docker\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := upstream.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            return {}
        if b"transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        try:
            return json.loads(body)
        except ValueError:
            return {}

    # -- the plumbing --------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        family, address = parse_address(self.engine)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.connect(address)
        return sock

    def handle(self, client: socket.socket) -> None:
        client.settimeout(HEAD_TIMEOUT_S)
        try:
            request, _ = read_request(client)  # nothing may follow a request
        except Refused as exc:
            self._refuse(client, str(exc), status=400)
            return
        except (ConnectionError, OSError):
            return
        try:
            decision = self.decide(request)
        except Refused as exc:
            self._refuse(client, str(exc))
            return
        client.settimeout(None)
        upstream = self._connect()
        try:
            upstream.sendall(self._rebuilt(request, decision))
            if request.upgrade:
                self._pipe_upgraded(client, upstream)
            else:
                _copy(upstream, client)
        except OSError:
            pass
        finally:
            upstream.close()

    def _rebuilt(self, request: Request, decision: Decision) -> bytes:
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        if decision.body or request.header("content-length"):
            headers.append(("Content-Length", str(len(decision.body))))
        if request.upgrade:
            headers += [("Connection", "Upgrade"), ("Upgrade", request.header("upgrade"))]
        else:
            headers.append(("Connection", "close"))
        lines = [f"{request.method} {decision.target} {request.version}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + decision.body

    def _pipe_upgraded(self, client: socket.socket, upstream: socket.socket) -> None:
        """Pass the engine's answer; if it hijacked the connection, pipe both ways."""
        head, rest = _read_head(upstream)
        client.sendall(head + b"\r\n\r\n" + rest)
        status = head.split(b"\r\n", 1)[0]
        raw = b" 101 " in status + b" " or b"raw-stream" in head or b"multiplexed" in head
        if not raw:
            _copy(upstream, client)
            return
        to_engine = threading.Thread(target=_copy_half, args=(client, upstream), daemon=True)
        to_engine.start()
        _copy(upstream, client)
        _shut(client)

    def _refuse(self, client: socket.socket, reason: str, status: int = 403) -> None:
        self.refused.append(reason)
        body = json.dumps({"message": f"winnow docker proxy: {reason}"}).encode()
        word = "Forbidden" if status == 403 else "Bad Request"
        head = (
            f"HTTP/1.1 {status} {word}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            client.sendall(head.encode() + body)
        except OSError:
            pass

    # -- serving -------------------------------------------------------------------------
    def start(self) -> DockerProxy:
        """Serve in a background thread (tests, and :meth:`serve_forever`)."""
        family, address = parse_address(self.listen)
        handle = self.handle

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                handle(self.request)

        if family == socket.AF_UNIX:
            assert isinstance(address, str)
            if os.path.exists(address):
                os.unlink(address)
            server: socketserver.BaseServer = _UnixServer(address, Handler)
            os.chmod(address, 0o660)
        else:
            server = _TCPServer(address, Handler)
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def address(self) -> str:
        if self.listen.startswith("tcp://") and isinstance(self.server, _TCPServer):
            host, port = self.server.server_address[:2]
            return f"tcp://{host}:{port}"
        return self.listen

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        family, address = parse_address(self.listen)
        if family == socket.AF_UNIX and isinstance(address, str) and os.path.exists(address):
            os.unlink(address)

    def serve_forever(self, say: Callable[[str], None] = print) -> None:
        self.start()
        say(f"docker proxy: {self.address} -> {self.engine} (image {self.ceilings.image})")
        assert self._thread is not None
        try:
            self._thread.join()
        finally:
            self.stop()

    def __enter__(self) -> DockerProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


def _copy_half(source: socket.socket, sink: socket.socket) -> None:
    """Copy until ``source`` ends, then half-close ``sink`` (the program's stdin EOF)."""
    _copy(source, sink)
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out
