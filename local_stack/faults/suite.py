"""``python -m local_stack faults`` (``make faults``): run the fault-injection scenarios and report.

Starts Tansu, Azurite and MariaDB once (:class:`local_stack.cmd_servers.StackServers`), trains the
initial model once (as ``make run`` does, :func:`local_stack.run._register_initial_model`) into a
template container, computes what the valid trades must give (:mod:`local_stack.faults.expected`),
runs each scenario (:mod:`local_stack.faults.scenarios`) and prints the table
(:mod:`local_stack.faults.report`); writes ``reports/faults.json`` and ``reports/faults.md``.

Examples (the full suite takes about ten minutes here; a small one about two)::

    python -m local_stack faults
    python -m local_stack faults --scenarios baseline,fuzz --limit 600 --fuzz 500 --kills 2
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from local_stack.faults.scenarios import FAULTS, Plan, run_scenario

__all__ = ["main", "run_suite"]

REPO = Path(__file__).resolve().parents[2]


def run_suite(plan: Plan, scenarios: Sequence[str], workdir: Path, history: Path, out=sys.stdout) -> dict:
    """Run ``scenarios`` (names of :data:`~local_stack.faults.scenarios.FAULTS`) under ``plan``.

    Returns ``{"rows": [figures per scenario], "expected": {...}, "wall_s": float, "plan": {...}}``; the
    row of a scenario that failed (functions or ingestor died, no drain) holds only ``scenario`` and ``error``.

    Raises
    ------
    ValueError
        An unknown scenario name.
    RuntimeError
        A server failed to start.
    """
    unknown = set(scenarios) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    from local_stack.cmd_servers import StackServers
    from local_stack.faults.expected import expected_events, recorded_ticks
    from local_stack.run import _register_initial_model
    from shared.lifecycle.registry import ModelRegistry
    from shared.settings import SettingsReader

    t0 = time.monotonic()
    say = lambda msg: print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=out, flush=True)
    read = SettingsReader({})
    level, family, key = read.number("PREDICTION_INTERVAL_LEVEL"), read.text("FORECAST_MODEL"), read.text("MODEL_KEY")
    rows = []
    with StackServers(workdir / "servers", mariadb=True) as servers:
        say(f"servers up: {servers.describe()}")
        signing_key = secrets.token_hex(32)
        template = servers.create_container("template-models")
        registry = ModelRegistry(template, signing_key)
        _register_initial_model(registry, key, history, level, say, family=family)
        model, meta = registry.load_current(key)
        expected = expected_events(recorded_ticks(plan.replay, plan.limit), model, meta.version, level)
        say(f"expected from {expected.ticks} valid trades: {len(expected.bars)} bars, "
            f"{len(expected.predictions)} predictions")
        for name in scenarios:
            try:
                rows.append(run_scenario(name, servers, template, signing_key, expected, plan, workdir, say))
            except RuntimeError as exc:  # reported in its row; the other scenarios still run
                say(f"{name} FAILED: {exc}")
                rows.append({"scenario": name, "error": str(exc)})
    return {"rows": rows, "wall_s": round(time.monotonic() - t0, 1),
            "expected": {"ticks": expected.ticks, "bars": len(expected.bars), "predictions": len(expected.predictions)},
            "plan": {"replay": plan.replay.name, "limit": plan.limit, "speed": plan.speed, "kills": plan.kills,
                     "fuzz": plan.fuzz, "outage_s": plan.outage_s, "freeze_s": plan.freeze_s, "seed": plan.seed}}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m local_stack faults``; returns 0 when every scenario ran, else 1."""
    from local_stack.faults.report import markdown_table
    from local_stack.run import DEFAULT_HISTORY, DEFAULT_REPLAY

    p = argparse.ArgumentParser(prog="python -m local_stack faults", description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    p.add_argument("--replay", type=Path, default=DEFAULT_REPLAY, help="recorded trade file (valid trades)")
    p.add_argument("--history", type=Path, default=DEFAULT_HISTORY, help="one-minute bars for the initial model")
    p.add_argument("--limit", type=int, default=None, help="replay only the first N trades")
    p.add_argument("--speed", type=float, default=60.0, help="replay speed of the scenarios but kill (default 60)")
    p.add_argument("--kill-speed", type=float, default=6.0,
                   help="replay speed of the kill scenario (default 6: ten kills and restarts fit in the replay)")
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs of the functions process (default 10)")
    p.add_argument("--fuzz", type=int, default=10_000, help="fuzzed messages per hub (default 10,000)")
    p.add_argument("--outage", type=float, default=10.0, help="seconds Azurite, then MariaDB, stay down")
    p.add_argument("--freeze", type=float, default=20.0, help="seconds Tansu stays frozen (MariaDB down)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one; keep it short)")
    p.add_argument("--json", type=Path, default=REPO / "reports" / "faults.json")
    p.add_argument("--md", type=Path, default=REPO / "reports" / "faults.md")
    args = p.parse_args(argv)
    plan = Plan(args.replay, args.limit, {"default": args.speed, "kill": args.kill_speed}, args.kills, args.fuzz,
                args.outage, args.freeze, args.seed)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="tcf-", dir=None if args.dir else "/tmp") as tmp:
        result = run_suite(plan, scenarios, args.dir or Path(tmp), args.history)
    table = markdown_table(result["rows"])
    command = "python -m local_stack faults " + " ".join(argv or [])
    print("\n" + table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    args.md.write_text(f"# Fault-injection suite\n\n`{command.strip()}` ({result['wall_s']:.0f} s wall; "
                       f"expected {result['expected']}):\n\n{table}\n")
    print(f"\nwrote {args.json} and {args.md} ({result['wall_s']:.0f} s)")
    return 1 if any("error" in row for row in result["rows"]) else 0
