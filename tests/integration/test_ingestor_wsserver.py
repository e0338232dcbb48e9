"""A local Binance-like websockets server replaying recorded raw messages, with scripted faults.

:class:`ReplayServer` speaks the Binance combined-stream protocol on 127.0.0.1: a client
connects to ``/stream``, sends ``{"method": "SUBSCRIBE", "params": [...], "id": n}``,
gets ``{"result": null, "id": n}``, then receives the recorded ``@trade`` messages of
the streams it subscribed to (verbatim lines of ``*_ws_raw_*.txt.gz``), merged in
recorded order. A script of actions, consumed in order across connections, injects the
faults: drop the TCP connection, close it cleanly, stall (send nothing but still
answer pings), freeze (stop reading, so pings go unanswered), send garbage, send
duplicates, skip trades (missed while disconnected). The server records what it sent
on which session and when sessions started and ended, which is the oracle the
ingestor tests check against.

The tests in this module check the server itself.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.data_files import BTC_WS_RAW, data_file

ETH_WS_RAW = "binance_spot_ETHUSDT_ws_raw_20240808T2354Z-20240809T0005Z.txt.gz"

GARBAGE = [
    b"\x00\xff\xfe binary junk",  # binary frame, not JSON -> malformed
    "{not json",  # -> malformed
    "[1, 2, 3]",  # JSON but not an object -> malformed
    json.dumps(
        {
            "stream": "btcusdt@trade",
            "data": {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "-5", "q": "1", "T": 1, "m": True},
        }
    ),  # -> malformed
    json.dumps({"hello": "world"}),  # JSON object of no known kind -> unknown
]
GARBAGE_MALFORMED, GARBAGE_UNKNOWN = 4, 1


@dataclass
class Recorded:
    """One recorded trade message."""

    stream: str
    symbol: str
    trade_id: int
    text: str


def load_trades(per_symbol: int, files: tuple[str, ...] = (BTC_WS_RAW, ETH_WS_RAW)) -> list[Recorded]:
    """The first ``per_symbol`` ``@trade`` messages of each raw recording, merged by recorded receive time."""
    rows: list[tuple[int, Recorded]] = []
    for name in files:
        n = 0
        with gzip.open(data_file(name), "rt") as fh:
            for line in fh:
                if "@trade" not in line:
                    continue
                recv_ns, text = line.rstrip("\n").split(" ", 1)
                obj = json.loads(text)
                rows.append((int(recv_ns), Recorded(obj["stream"], obj["data"]["s"], obj["data"]["t"], text)))
                n += 1
                if n >= per_symbol:
                    break
    rows.sort(key=lambda r: r[0])
    return [r for _, r in rows]


@dataclass
class Session:
    """One accepted connection as the server saw it (times are time.monotonic())."""

    number: int
    connected_at: float
    subscribed_at: float | None = None
    ended_at: float | None = None
    streams: tuple[str, ...] = ()
    ended_by: str = ""
    sent: list[tuple[str, int]] = field(default_factory=list)


class ReplayServer:
    """Binance-like combined-stream server in a background thread (see the module docstring).

    Parameters
    ----------
    trades : list of Recorded
        The recorded trade messages, in the order to send them.
    script : list of tuples
        Actions: ``("send", n)``, ``("skip", n)``, ``("dup", k)``, ``("garbage",)``,
        ``("drop",)``, ``("close",)``, ``("stall", seconds)``, ``("freeze", seconds)``,
        ``("end",)`` (idle until stopped). When the script is exhausted the server idles.
    port : int, optional
        Port to listen on (default: any free one).
    """

    def __init__(self, trades: list[Recorded], script: list[tuple], *, port: int = 0) -> None:
        self.trades = trades
        self.script = list(script)
        self.port = port
        self.sessions: list[Session] = []
        self.cursor = 0
        self.step = 0
        self.garbage_sent = 0
        self.duplicates_sent = 0
        self.skipped: list[Recorded] = []
        self.script_done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._started = threading.Event()
        self._last_sent: list[Recorded] = []

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def start(self) -> ReplayServer:
        self._thread = threading.Thread(target=self._run, name="replay-ws-server", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("replay server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", self.port, ping_interval=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._started.set()
            await self._stopped.wait()

    # ----------------------------------------------------------------- oracle
    def sent_ids(self) -> dict[str, list[int]]:
        """Trade ids sent per symbol, in send order, duplicates included."""
        out: dict[str, list[int]] = {}
        for s in self.sessions:
            for symbol, tid in s.sent:
                out.setdefault(symbol, []).append(tid)
        return out

    def unique_sent(self) -> dict[str, set[int]]:
        return {symbol: set(ids) for symbol, ids in self.sent_ids().items()}

    def expected_gaps(self) -> tuple[int, int]:
        """(gap events, missing ids) in the sent trade ids of each symbol (the recordings have none)."""
        gaps = missing = 0
        for ids in self.unique_sent().values():
            ordered = sorted(ids)
            for a, b in zip(ordered, ordered[1:]):
                if b > a + 1:
                    gaps += 1
                    missing += b - a - 1
        return gaps, missing

    # ----------------------------------------------------------------- protocol
    async def _handler(self, ws: ServerConnection) -> None:
        session = Session(len(self.sessions) + 1, time.monotonic())
        self.sessions.append(session)
        try:
            request = json.loads(await ws.recv())
            assert request["method"] == "SUBSCRIBE", request
            session.streams = tuple(request["params"])
            await ws.send(json.dumps({"result": None, "id": request["id"]}))
            session.subscribed_at = time.monotonic()
            while self.step < len(self.script):
                action = self.script[self.step]
                self.step += 1
                if self.step == len(self.script):
                    self.script_done.set()
                ended = await self._do(ws, session, action)
                if ended:
                    return
            self.script_done.set()
            await ws.wait_closed()
            session.ended_by = session.ended_by or "client"
        except ConnectionClosed:
            session.ended_by = session.ended_by or "client"
        finally:
            session.ended_at = time.monotonic()

    def _next(self, streams: tuple[str, ...]) -> Recorded | None:
        while self.cursor < len(self.trades):
            rec = self.trades[self.cursor]
            self.cursor += 1
            if rec.stream in streams:
                return rec
        return None

    async def _do(self, ws: ServerConnection, session: Session, action: tuple) -> bool:
        """Run one action; True when it ended the connection."""
        kind = action[0]
        if kind == "send":
            for _ in range(action[1]):
                rec = self._next(session.streams)
                if rec is None:
                    break
                await ws.send(rec.text)
                session.sent.append((rec.symbol, rec.trade_id))
                self._last_sent.append(rec)
                del self._last_sent[:-1000]
        elif kind == "skip":
            for _ in range(action[1]):
                rec = self._next(session.streams)
                if rec is not None:
                    self.skipped.append(rec)
        elif kind == "dup":
            for rec in self._last_sent[-action[1] :]:
                await ws.send(rec.text)
                session.sent.append((rec.symbol, rec.trade_id))
                self.duplicates_sent += 1
        elif kind == "garbage":
            for junk in GARBAGE:
                await ws.send(junk)
                self.garbage_sent += 1
        elif kind == "drop":
            session.ended_by = "drop"
            ws.transport.close()  # no close frame: an abnormal closure (1006) for the client; data sent is flushed
            await ws.wait_closed()
            return True
        elif kind == "close":
            session.ended_by = "close"
            await ws.close(1001, "going away")  # what Binance sends at its 24-hour limit
            return True
        elif kind == "stall":
            session.ended_by = "stall"
            try:
                await asyncio.wait_for(ws.wait_closed(), action[1])  # pings are still answered
            except TimeoutError:
                pass
            return ws.state.name == "CLOSED"
        elif kind == "freeze":
            session.ended_by = "freeze"
            ws.transport.pause_reading()  # pings are no longer read, so never answered
            await asyncio.sleep(action[1])
            ws.transport.resume_reading()
            try:
                await asyncio.wait_for(ws.wait_closed(), 2)
            except TimeoutError:
                pass
            return True
        elif kind == "end":
            await ws.wait_closed()
            return True
        else:
            raise ValueError(f"unknown action {action!r}")
        return False


# --------------------------------------------------------------------------- tests of the server
async def _client(url: str, streams: list[str], n: int) -> list[str]:
    got = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
        assert json.loads(await ws.recv()) == {"result": None, "id": 1}
        for _ in range(n):
            got.append(await asyncio.wait_for(ws.recv(), 5))
    return got


def test_server_sends_only_subscribed_streams_verbatim():
    trades = load_trades(50)
    assert {t.symbol for t in trades} == {"BTCUSDT", "ETHUSDT"}
    with ReplayServer(trades, [("send", 20), ("end",)]) as server:
        got = asyncio.run(_client(server.url, ["ethusdt@trade"], 20))
    eth = [t.text for t in trades if t.symbol == "ETHUSDT"][:20]
    assert got == eth
    assert server.sent_ids() == {"ETHUSDT": [t.trade_id for t in trades if t.symbol == "ETHUSDT"][:20]}


def test_server_faults_drop_and_garbage():
    trades = load_trades(30)

    async def scenario(url: str) -> tuple[list, type]:
        got = []
        async with connect(url) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
            await ws.recv()
            try:
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 5))
            except ConnectionClosed as exc:
                return got, type(exc)

    with ReplayServer(trades, [("send", 3), ("garbage",), ("dup", 2), ("drop",)]) as server:
        got, closed = asyncio.run(scenario(server.url))
    assert len(got) == 3 + len(GARBAGE) + 2
    assert got[:3] == [t.text for t in trades if t.symbol == "BTCUSDT"][:3]
    assert got[-2:] == got[1:3]
    assert closed.__name__ == "ConnectionClosedError"  # abnormal closure, as a network drop
    assert server.sessions[0].ended_by == "drop" and server.duplicates_sent == 2


def test_load_trades_ids_are_contiguous_per_symbol():
    trades = load_trades(200)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        ids = [t.trade_id for t in trades if t.symbol == symbol]
        assert ids == list(range(ids[0], ids[0] + 200))
    assert Path(data_file(BTC_WS_RAW)).name.startswith("binance_spot_")
