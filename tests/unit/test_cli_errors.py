"""Every command's bad input: one line naming the problem and the fix, a non-zero exit, no traceback
(issue 17, item 4). Also ``--help`` (plain text) and ``--version``, from a directory that is not
the repository, through the console scripts that ``make`` installs (``pip install -e .``).

The ``local_stack`` cases also show that inputs are checked before any server starts: the run
never gets to its first line (``Tansu broker on ...``). ``tickcast models`` with an unknown key
needs a registry: tests/integration/test_cli_models.py.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local_stack.tansu import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KRAKEN = REPO / "samples" / "kraken_XBTUSD_trades_20190701T00Z-01Z.csv.gz"
FTX = REPO / "samples" / "ftx_BTC-PERP_1m_20211231-20220201.csv.gz"
SPHINX = ("``", ":mod:", ":func:", ":class:", ":data:", ":meth:")
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of bad inputs: a .csv.gz that is not gzip, a CSV that is not OHLCV, a regular file."""
    d = tmp_path_factory.mktemp("bad")
    (d / "notgzip.csv.gz").write_text("hello,world\n")
    (d / "wrong.csv").write_text("a,b,c\n1,2,3\n")
    (d / "afile").write_text("")
    (d / "trades_no_rows.csv.gz").write_bytes(gzip.compress(b"time,x\n"))
    return d


def _run(script: str, args: list[str], cwd: Path, env: dict | None = None, timeout: float = 60):
    exe = BIN / script
    assert exe.exists(), f"{exe} missing: `make` installs the console scripts (pip install -e .)"
    started = time.monotonic()
    proc = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return proc, time.monotonic() - started


def _one_line_error(proc, status: int, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


CASES = [
    # (script, args, extra env, exit status, expected fragments); {bad}: the bad-input folder,
    # {port}: a port nobody listens on, {ftx} / {kraken}: the bundled samples
    ("tickcast", ["backtest", "{bad}/missing.csv"], {}, 2, ["no such file", "give a one-minute OHLCV"]),
    ("tickcast", ["backtest", "{bad}/notgzip.csv.gz"], {}, 2, ["Not a gzipped file", "plain or gzip"]),
    ("tickcast", ["backtest", "{bad}/wrong.csv"], {}, 2, ["need a time column and open/high/low/close"]),
    ("tickcast", ["backtest", "mysql://u:secret@127.0.0.1:{port}/db", "--exchange", "a", "--symbol", "b"], {}, 2,
     ["cannot read the history store mysql://u:***@127.0.0.1", "Connection refused", "check the URL"]),
    ("tickcast", ["backtest", "{ftx}", "--json", "{bad}/afile/out.json"], {}, 2,
     ["--json", "is a file, not a folder", "give a writable path"]),
    ("tickcast", ["backtest", "{ftx}", "--level", "2"], {}, 2, ["not an interval level", "(0, 1)"]),
    ("tickcast", ["backtest", "{ftx}", "--model", "nope"], {}, 2, ["--model", "unknown model family 'nope'", "linear"]),
    ("tickcast", ["models"], {"MODEL_STORAGE": "", "MODEL_STORAGE__blobServiceUri": ""}, 2,
     ["no model registry configured", "set MODEL_STORAGE"]),
    ("tickcast", ["models"], {"MODEL_STORAGE": f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                                               f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{{port}}/"
                                               "devstoreaccount1;"}, 2,
     ["cannot read the model registry at http://127.0.0.1:", "Connection refused", "check MODEL_STORAGE"]),
    ("tickcast", [], {}, 2, ["required", "--help"]),
    ("tickcast-ingestor", ["replay", "{bad}/missing.csv", "--bootstrap-servers", "127.0.0.1:1"], {}, 2,
     ["no such file", "recorded trade file"]),
    ("tickcast-ingestor", ["replay", "{bad}/notgzip.csv.gz", "--bootstrap-servers", "127.0.0.1:1"], {}, 2,
     ["unrecognised recorded format", "plain or gzip"]),
    ("tickcast-ingestor", ["replay", "{kraken}", "--bootstrap-servers", "127.0.0.1:1", "--speed", "-5"], {}, 2,
     ["--speed", "'-5' is not a speed", ">= 0"]),
    ("tickcast-ingestor", ["replay", "{kraken}", "--bootstrap-servers", "127.0.0.1:1", "-X", "foo.bar=1"], {}, 2,
     ["invalid Kafka setting", "foo.bar", "-X"]),
    ("tickcast-ingestor", ["live", "--subscriptions", "foo:BTC"], {}, 2, ["unknown ingestor source 'foo'"]),
    ("tickcast-ingestor", ["live", "--health-port", "99999"], {}, 2, ["not a TCP port", "0-65535"]),
    ("tickcast-local", ["{bad}/missing.csv"], {}, 2, ["no such file", "recorded trade files"]),
    ("tickcast-local", ["{bad}/notgzip.csv.gz"], {}, 2, ["unrecognised recorded format", "plain or gzip"]),
    ("tickcast-local", ["--history", "{bad}/wrong.csv"], {}, 2, ["--history", "need a time column"]),
    ("tickcast-local", ["--history", "{bad}/notgzip.csv.gz"], {}, 2, ["--history", "Not a gzipped file"]),
    ("tickcast-local", ["--speed", "-5"], {}, 2, ["--speed -5", "give a number >= 0"]),
    ("tickcast-local", ["--timeout", "-1"], {}, 2, ["--timeout -1", "leave it out"]),
    ("tickcast-local", ["--web-port", "70000"], {}, 2, ["not a TCP port"]),
    ("tickcast-local", ["--live", "foo:BTC"], {}, 2, ["unknown ingestor source 'foo'", "e.g. --live"]),
    ("tickcast-local", ["--live", "binance:BTCUSDT", "--url", "binance=http://x"], {}, 2, ["ws[s]://"]),
    ("tickcast-local", ["--url", "binance=ws://127.0.0.1:1/"], {}, 2, ["--url only applies with --live"]),
    ("tickcast-local", [], {"MYSQL_URL": "mysql://u:p@127.0.0.1:{port}/db"}, 2,
     ["MYSQL_URL: cannot reach the history store", "Connection refused", "unset MYSQL_URL"]),
]


@pytest.mark.parametrize("script,args,env,status,needles", CASES,
                         ids=[f"{c[0]} {' '.join(c[1])[:60]} {' '.join(c[2])}".strip() for c in CASES])
def test_bad_input_is_one_line_without_traceback(bad, tmp_path, script, args, env, status, needles):
    port = str(free_port())  # nothing listens there: a refused connection
    args = [a.replace("{bad}", str(bad)).replace("{port}", port).replace("{ftx}", str(FTX))
            .replace("{kraken}", str(KRAKEN)) for a in args]
    env = {k: v.replace("{port}", port) for k, v in env.items()}
    proc, seconds = _run(script, args, tmp_path, env)
    line = _one_line_error(proc, status, *needles)
    assert "Tansu broker on" not in proc.stdout  # checked before any server started
    assert seconds < 30, f"took {seconds:.1f} s"  # bounded: no long network timeouts
    print(f"\n{script} {' '.join(args)}\n  -> exit {proc.returncode}: {line}")


@pytest.mark.parametrize("script", ["tickcast", "tickcast-ingestor", "tickcast-local"])
def test_help_is_plain_text_and_version_works_from_any_directory(tmp_path, script):
    proc, _ = _run(script, ["--help"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {script}"), proc.stderr
    assert not [m for m in SPHINX if m in proc.stdout], proc.stdout
    assert "Traceback" not in proc.stderr
    version, _ = _run(script, ["--version"], tmp_path)
    assert version.returncode == 0 and "tickcast" in version.stdout and version.stdout.count("\n") == 1
