"""The ingestor child process that feeds the local pipeline: a replay, or the live websockets.

:class:`ReplayFeed` runs ``python -m ingestor replay`` on recorded files and waits for it: no
fixed deadline, the replay takes its span divided by the speed (:class:`~local_stack.inputs.ReplayPlan`).
:class:`LiveFeed` runs ``python -m ingestor live --publisher kafka`` on the given subscriptions until
Ctrl-C (or ``stop``), relaying the ingestor's JSON log lines as run lines: connections, connect
failures with their reason and the backoff before the next attempt, losses, and errors. Both
return the number of ticks the ingestor had published, which the pipeline then drains.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from local_stack.inputs import ReplayPlan
from local_stack.processes import _death_signal_preexec

__all__ = ["FeedError", "LiveFeed", "ReplayFeed", "format_ingestor_log"]

REPO = Path(__file__).resolve().parent.parent

_RELAYED = {"ingestor started", "connected", "reconnecting", "stopping: publishing what was received"}
"""INFO messages of the live ingestor worth a run line (every WARNING and ERROR is relayed too)."""


class FeedError(RuntimeError):
    """The ingestor child failed; the message says how (one line)."""


def format_ingestor_log(line: str) -> str | None:
    """A run line for one stderr line of the live ingestor, or ``None`` to leave it out.

    >>> format_ingestor_log('{"level": "WARNING", "logger": "ingestor.sources.connection",'
    ...     ' "message": "connect failed: OSError: [Errno 101] Network is unreachable; attempt 2,'
    ...     ' retrying in 0.7 s", "connection": "binance:BTCUSDT"}')
    'ingestor: binance:BTCUSDT: connect failed: OSError: [Errno 101] Network is unreachable; attempt 2, retrying in 0.7 s'
    >>> format_ingestor_log('{"level": "INFO", "message": "counters"}') is None
    True
    >>> format_ingestor_log('not json')
    'ingestor: not json'
    """
    line = line.rstrip("\n")
    try:
        entry = json.loads(line)
    except ValueError:
        return f"ingestor: {line}" if line.strip() else None
    if not isinstance(entry, dict):
        return f"ingestor: {line}"
    message = str(entry.get("message", ""))
    level = entry.get("level", "INFO")
    if level not in ("WARNING", "ERROR", "CRITICAL") and message not in _RELAYED:
        return None
    where = f"{entry['connection']}: " if "connection" in entry else ""
    extra = ""
    if message == "reconnecting":
        extra = f" in {entry.get('delay_s', '?')} s (after {entry.get('after', '?')})"
    elif message == "connection lost":
        extra = f" ({entry.get('reason', '?')}, close code {entry.get('close_code')})"
    elif message == "ingestor started":
        message = "started"
        extra = f": {', '.join(entry.get('subscriptions', []))}; /healthz on port {entry.get('health_port')}"
    return f"ingestor: {where}{message}{extra}"


class ReplayFeed:
    """``python -m ingestor replay`` of recorded ``files`` at ``speed``, into Kafka.

    Parameters
    ----------
    files : sequence of Path
        Recorded trade files (checked before: :func:`local_stack.inputs.replay_plan`).
    speed : float
        1 = recorded pace, 0 = as fast as possible.
    plan : ReplayPlan
        What the files hold; sizes the expected duration.
    """

    def __init__(self, files: Sequence[Path], speed: float, plan: ReplayPlan) -> None:
        self.files = list(files)
        self.speed = speed
        self.plan = plan
        self.proc: subprocess.Popen[str] | None = None
        self.stats: dict[str, Any] = {}

    def describe(self) -> str:
        """One line: what is replayed, at what speed, for about how long."""
        duration = self.plan.duration_s(self.speed)
        pace = "as fast as possible" if duration is None else f"about {_minutes(duration)}"
        return (f"replaying {', '.join(p.name for p in self.files)} ({self.plan.trades:,} trades over"
                f" {_minutes(self.plan.span_s)} of exchange time) at speed {self.speed:g}: {pace}")

    def start(self, bootstrap: str, topic: str, deadletter_topic: str) -> None:
        """Start the child process."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingestor", "--log-level", "WARNING", "replay", *map(str, self.files),
             "--bootstrap-servers", bootstrap, "--topic", topic, "--deadletter-topic", deadletter_topic,
             "--speed", repr(self.speed)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )

    def wait(self, alive: Callable[[], None], deadline: float | None = None) -> int:
        """Wait for the replay to end (no deadline unless given); returns the ticks it published.

        ``alive()`` is called while waiting and raises if the pipeline died meanwhile.

        Raises
        ------
        FeedError
            The ingestor failed, or ``deadline`` (``time.monotonic()``) passed first.
        """
        assert self.proc is not None
        while self.proc.poll() is None:
            alive()
            if deadline is not None and time.monotonic() > deadline:
                raise FeedError("the replay did not finish before --timeout; raise it or leave it out")
            time.sleep(0.2)
        stdout = self.proc.stdout.read() if self.proc.stdout else ""
        if self.proc.returncode != 0:
            raise FeedError(f"the ingestor (replay) failed with exit code {self.proc.returncode}")
        self.stats = json.loads(stdout.strip().splitlines()[-1])
        return int(self.stats["published"])

    def summary(self) -> str:
        """One line on what the replay published."""
        s = self.stats
        return (f"ingestor finished: {s['published']} ticks published, {s['malformed']} malformed lines set aside,"
                f" {s['ticks_per_second']:,.0f} ticks/s")

    def stop(self) -> None:
        """Terminate the child if it still runs."""
        _terminate(self.proc)


class LiveFeed:
    """``python -m ingestor live --publisher kafka`` on ``subscriptions`` until Ctrl-C or ``stop``.

    Parameters
    ----------
    subscriptions : str
        ``source:SYMBOL,SYMBOL;source:SYMBOL`` (checked before: :func:`ingestor.config.parse_subscriptions`).
    urls : sequence of str
        ``SOURCE=ws://...`` endpoint overrides (tests point them at a local exchange server).
    say : callable
        Prints one run line.
    stop : threading.Event, optional
        Ends the feed like Ctrl-C does.
    """

    def __init__(self, subscriptions: str, urls: Sequence[str], say: Callable[[str], None],
                 stop: threading.Event | None = None) -> None:
        self.subscriptions = subscriptions
        self.urls = list(urls)
        self.say = say
        self.stop_event = stop or threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self.stats: dict[str, Any] = {}
        self._relay: threading.Thread | None = None

    def describe(self) -> str:
        """One line: what is streamed, from where."""
        where = f" (endpoints {', '.join(self.urls)})" if self.urls else ""
        return f"streaming live trades of {self.subscriptions}{where} until Ctrl-C"

    def start(self, bootstrap: str, topic: str, deadletter_topic: str) -> None:
        """Start the child process (its own session: Ctrl-C reaches it through this process, in order)."""
        command = [sys.executable, "-m", "ingestor", "--log-level", "INFO", "live", "--publisher", "kafka",
                   "--bootstrap-servers", bootstrap, "--topic", topic, "--deadletter-topic", deadletter_topic,
                   "--subscriptions", self.subscriptions, "--health-port", "0", "--log-format", "json"]
        for url in self.urls:
            command += ["--url", url]
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_death_signal_preexec(signal.SIGTERM))
        self._relay = threading.Thread(target=self._relay_logs, name="ingestor-log", daemon=True)
        self._relay.start()

    def _relay_logs(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            text = format_ingestor_log(line)
            if text is not None:
                self.say(text)

    def wait(self, alive: Callable[[], None], deadline: float | None = None) -> int:
        """Stream until Ctrl-C, ``stop`` or ``deadline``; then stop the ingestor (SIGTERM: it publishes
        what it received) and return the ticks it published.

        Raises
        ------
        FeedError
            The ingestor ended by itself (e.g. a refused subscription) or did not stop in time.
        """
        assert self.proc is not None
        try:
            while not self.stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
                if self.proc.poll() is not None:
                    raise FeedError(f"the live ingestor ended by itself with exit code {self.proc.returncode}"
                                    " (its log lines above say why)")
                alive()
                self.stop_event.wait(0.2)
        except KeyboardInterrupt:
            self.say("Ctrl-C: stopping the live ingestor (it publishes what it received)")
        self.proc.send_signal(signal.SIGTERM)
        try:
            stdout, _ = self.proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise FeedError("the live ingestor did not stop within 40 s of SIGTERM") from None
        if self._relay is not None:
            self._relay.join(5)
        lines = stdout.strip().splitlines()
        if not lines:
            raise FeedError(f"the live ingestor printed no counters (exit code {self.proc.returncode})")
        self.stats = json.loads(lines[-1])
        return int(self.stats["counters"]["published"])

    def summary(self) -> str:
        """One line on what the live ingestor did."""
        c = self.stats.get("counters", {})
        return (f"live ingestor stopped: {c.get('received', 0)} trades received, {c.get('published', 0)} ticks"
                f" published, {c.get('connect_failures', 0)} connect failures, {c.get('reconnects', 0)} reconnects,"
                f" {c.get('undelivered', 0)} undelivered")

    def stop(self) -> None:
        """Terminate the child if it still runs."""
        _terminate(self.proc)


def _terminate(proc: subprocess.Popen[str] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _minutes(seconds: float) -> str:
    """``59.8 min`` / ``42 s``.

    >>> _minutes(3588.04), _minutes(42.2)
    ('59.8 min', '42 s')
    """
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
