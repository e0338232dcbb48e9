"""``python -m local_stack functions``: run the Event-Hub-triggered functions as a process of their own.

It loads a ``local.settings.json`` (``python -m local_stack servers`` writes one) into the
environment, as ``func start`` does, and drives the Event Hub functions of ``function_app``
(``predict``, ``archive``, ``broadcast``; ``--only`` picks some) with
:class:`local_stack.functions_host.EventHubFunctionDriver`, one thread each, from the Kafka
endpoint in ``KAFKA_BOOTSTRAP_SERVERS``, until SIGTERM or Ctrl-C; then it leaves the consumer
groups and exits 0. SIGKILL is the crash the fault-injection suite (:mod:`local_stack.faults`)
inflicts on it: whatever was not checkpointed is redelivered to the next process.

With ``--counters FILE`` it rewrites FILE (atomically, every ``--counters-every`` seconds and at
exit) with its counters: per driver ``assigned`` (the group gave it partitions), ``consumed``
(events checkpointed), ``lost``, ``attempts`` (invocations) and ``produced`` per topic, since this
process started. :class:`FunctionsProcess` starts, watches and kills such a process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from local_stack.appsettings import read_local_settings

__all__ = ["FunctionsProcess", "main"]

REPO = Path(__file__).resolve().parent.parent


def _write_counters(path: Path, drivers: list, started: float, state: str) -> None:
    data = {
        "pid": os.getpid(), "state": state, "uptime_s": round(time.monotonic() - started, 3),
        "drivers": {d.name: {"assigned": d.assigned.is_set(), "consumed": d.totals.consumed, "lost": d.totals.lost,
                             "attempts": d.totals.attempts, "produced": dict(d.totals.produced)} for d in drivers},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


OWNERSHIP_SESSION_MS = 30_000
"""``session.timeout.ms`` of the drivers' consumers: how long a silent process keeps its partitions.

In Azure the Event Hubs trigger's processor keeps a partition until its ownership record is two
minutes stale ("EventProcessorOptions.PartitionOwnershipExpirationInterval": "The default
ownership interval is 2 minutes"; load balancing every 30 s, Azure.Messaging.EventHubs.Processor
5.7.0 release notes), so a stall of the service shorter than that moves no partition. Kafka's
group coordinator instead evicts a member silent for ``session.timeout.ms`` and rebalances the
group, which costs seconds after a broker stall that Azure would not spend. 30 s keeps a broker
stall of up to 30 s from moving partitions, and still hands a killed process's partitions to its
successor sooner than Azure would (2 min): only latency differs, since state is committed with
the position (:mod:`shared.serving.partitions`). A process restarted under the same
``--instance`` name rejoins as the same static member (``group.instance.id``, KIP-345), so it gets
its partitions back without waiting for the session of the process that died.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m local_stack functions``; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m local_stack functions", description=__doc__.splitlines()[0])
    p.add_argument("--settings", type=Path, required=True, help="local.settings.json to load")
    p.add_argument("--only", default="", help="comma-separated function names (default: every Event Hub function)")
    p.add_argument("--counters", type=Path, default=None, help="JSON file to rewrite with the drivers' counters")
    p.add_argument("--counters-every", type=float, default=0.5, help="seconds between two counter writes")
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    p.add_argument("--instance", default="local-1",
                   help="this host instance's name: a process restarted with the same name takes its partitions "
                        "back at once (Kafka static membership); run a second instance under another name")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        values = read_local_settings(args.settings)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    os.environ.update(values)  # the functions read their app settings from the environment

    import function_app
    from functions import reset_services
    from local_stack.functions_host import EventHubFunctionDriver, app_functions
    from local_stack.tansu import consumer_config, producer_config
    from shared.settings import SettingsReader

    bootstrap = SettingsReader(values).text("KAFKA_BOOTSTRAP_SERVERS")
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    functions = [fn for fn in app_functions(function_app.app)
                 if fn.get_trigger().get_dict_repr().get("type") == "eventHubTrigger"
                 and (not only or fn.get_function_name() in only)]
    unknown = only - {fn.get_function_name() for fn in functions}
    if unknown:
        p.error(f"no Event Hub function named {', '.join(sorted(unknown))}")
    reset_services()
    # group.id comes from each trigger; the session timeout stands for partition ownership (see below)
    ccfg = consumer_config(bootstrap, group_id="local-stack", session_timeout_ms=OWNERSHIP_SESSION_MS,
                           **{"group.instance.id": args.instance})
    pcfg = producer_config(bootstrap)
    drivers = [EventHubFunctionDriver(fn, values, ccfg, pcfg) for fn in functions]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=d.run, args=(stop,), name=d.name, daemon=True) for d in drivers]
    started = time.monotonic()
    for t in threads:
        t.start()
    print(json.dumps({"pid": os.getpid(), "functions": [f"{d.name} ({d.topic}, group {d.group})" for d in drivers]}),
          flush=True)
    while not stop.wait(args.counters_every):
        if args.counters is not None:
            _write_counters(args.counters, drivers, started, "running")
        dead = [t.name for t in threads if not t.is_alive()]
        if dead:
            logging.critical("driver thread(s) died: %s", ", ".join(dead))
            stop.set()
    for t in threads:
        t.join(30)
    for d in drivers:
        d.close()
    reset_services()
    if args.counters is not None:
        _write_counters(args.counters, drivers, started, "stopped")
    return 0


class FunctionsProcess:
    """A ``python -m local_stack functions`` child process, started, watched and killed by the suite.

    Parameters
    ----------
    settings : Path
        Its ``local.settings.json``.
    workdir : Path
        Where its counters file and log (stdout and stderr, appended across restarts) go.
    only : str
        ``--only`` (comma-separated function names; empty = all).

    Attributes
    ----------
    kills : int
        SIGKILLs sent so far.
    """

    def __init__(self, settings: Path, workdir: Path, only: str = "") -> None:
        self.settings = Path(settings)
        self.workdir = Path(workdir)
        self.only = only
        self.counters_path = self.workdir / "functions.counters.json"
        self.log_path = self.workdir / "functions.log"
        self.proc: subprocess.Popen | None = None
        self.kills = 0
        self.lost = 0
        """Events lost (``totals.lost``) by the processes before the running one."""
        self._last: dict = {}

    def start(self, ready_timeout: float = 60.0) -> float:
        """Start the process and wait until every driver was assigned partitions; return the seconds taken.

        Raises
        ------
        RuntimeError
            The process exited or was not ready within ``ready_timeout`` (the log tail is in the message).
        """
        t0 = time.monotonic()
        self.counters_path.unlink(missing_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "local_stack", "functions", "--settings", str(self.settings),
               "--counters", str(self.counters_path), "--counters-every", "0.2"]
        if self.only:
            cmd += ["--only", self.only]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while time.monotonic() - t0 < ready_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"functions process exited with {self.proc.returncode}:\n{self.log_tail()}")
            c = self.counters()
            if c and c["drivers"] and all(d["assigned"] for d in c["drivers"].values()):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"functions process not ready within {ready_timeout:g} s:\n{self.log_tail()}")

    def counters(self) -> dict:
        """The newest counters the process wrote (``{}`` before the first write)."""
        try:
            self._last = json.loads(self.counters_path.read_text())
        except (OSError, ValueError):
            pass
        return self._last

    def kill(self) -> None:
        """SIGKILL the process (a crash: nothing flushed, no group left) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.lost += sum(d["lost"] for d in self.counters().get("drivers", {}).values())
            self.proc.kill()
            self.proc.wait()
            self.kills += 1
        self._last = {}

    def terminate(self, timeout: float = 40.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout`` s); return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.lost += sum(d["lost"] for d in self.counters().get("drivers", {}).values())
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the process's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
