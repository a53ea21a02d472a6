"""The wire of the virtual lab: a TCP server on 127.0.0.1 that splits the byte stream into messages (a line,
or a command with an IEEE 488.2 block) and hands each to a simulated instrument's ``handle``; and
:func:`line_server`, which makes the start function of a simulated instrument served that way.

Below every simulated instrument module (imports run one way: tests/test_import_graph.py).
"""
from __future__ import annotations

import socket
import socketserver
import threading

_clients_lock = threading.Lock()


def split_message(buf: bytearray):
    """Take one complete message off ``buf``: ``(command, block_or_None)``, or ``None`` if incomplete.

    A message is a line, or a command followed by an IEEE 488.2 definite-length block and ``\\n``.
    """
    nl = buf.find(b"\n")
    h = buf.find(b"#")
    if h != -1 and (nl == -1 or h < nl):
        if len(buf) < h + 2:
            return None
        ndig = buf[h + 1] - 48
        if not 1 <= ndig <= 9:
            raise ValueError("bad block header")
        if len(buf) < h + 2 + ndig:
            return None
        length = int(buf[h + 2:h + 2 + ndig])
        end = h + 2 + ndig + length
        if len(buf) < end + 1:
            return None
        command, block = bytes(buf[:h]).decode(errors="replace").strip(), bytes(buf[h:end])
        del buf[:end + 1]
        return command, block
    if nl == -1:
        return None
    line = bytes(buf[:nl]).decode(errors="replace").strip()
    del buf[:nl + 1]
    return line, None


class _Handler(socketserver.BaseRequestHandler):
    def setup(self):
        with _clients_lock:
            self.server.clients = getattr(self.server, "clients", 0) + 1

    def finish(self):  # runs however handle() ended: client closed, killed, dropped, server stopped
        with _clients_lock:
            self.server.clients -= 1
            last = self.server.clients == 0
        gone = getattr(self.server.instrument, "client_gone", None)
        if last and gone is not None:
            gone()

    def handle(self):
        server: InstrumentServer = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        while not server.stopping:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            buf += data
            out = bytearray()
            while True:
                try:
                    msg = split_message(buf)
                except ValueError:
                    buf.clear()
                    break
                if msg is None:
                    break
                if not msg[0] and msg[1] is None:
                    continue
                reply = server.instrument.handle(*msg)
                if reply is None:
                    continue
                out += (reply.encode() if isinstance(reply, str) else reply) + b"\n"
            if out:
                sock.sendall(out)


class InstrumentServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, instrument, port: int = 0):
        self.instrument = instrument
        self.stopping = False
        super().__init__(("127.0.0.1", port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"sim-{type(instrument).__name__}", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self) -> None:
        self.stopping = True
        self.shutdown()
        self.server_close()


def line_server(transport: str, make):
    """The start function of a simulated instrument served over a line protocol: ``transport`` is
    ``serial`` (reached through pyserial's ``socket://`` URL) or ``scpi`` (pyvisa-py's
    ``TCPIP0::...::SOCKET``). ``make(lab, scene, name, cfg)`` builds the object that answers each message;
    ``start(lab, name, cfg, scene)`` returns ``(instrument, server, address)``."""

    def start(lab, name: str, cfg, scene):
        inst = make(lab, scene if scene is not None else lab.chip, name, cfg)
        server = InstrumentServer(inst)
        if transport == "serial":
            return inst, server, f"socket://127.0.0.1:{server.port}"
        return inst, server, f"TCPIP0::127.0.0.1::{server.port}::SOCKET"

    return start
