"""`attnrec serve` as a newcomer runs it: the installed console script in a process of its
own, on the default model and config, answered by `attnrec recommend`, stopped by SIGTERM
with calls in flight, which are finished first."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from attnrec.bench.faults import reweighted_copy
from attnrec.model.checkpoint import DEFAULT_CHECKPOINT
from attnrec.serving.client import RecommenderClient
from attnrec.serving.server import free_port
from tests.serving.live import LOOPBACK, listening

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READY = "attnrec is serving"
START_BOUND_S = 600  # catches a hang only; start-up takes far less
STOP_BOUND_S = 180


def console_script() -> str:
    script = Path(sys.executable).with_name("attnrec")
    assert script.exists(), f"{script}: the attnrec console script is not installed beside this Python"
    return str(script)


def lines_of(process: subprocess.Popen) -> queue.Queue:
    """Every line the process prints, as it prints it (None at the end)."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for(lines: queue.Queue, text: str, bound_s: float, seen: list[str]) -> bool:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            return False
        seen.append(line)
        if text in line:
            return True
    return False


def call_in_flight(client: RecommenderClient, i: int) -> str:
    """An Explain (slow) or a Recommend on a connected channel; the status it ended with."""
    try:
        if i % 2:
            client.explain(["1", "32", "260", "1196"], n_steps=256)
        else:
            client.recommend(["1", "32", "260"], k=5)
        return "OK"
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"


def ray_address(seen: list[str]) -> str:
    """The Ray address in the rollout command `attnrec serve` printed."""
    words = next(line for line in seen if "attnrec rollout --checkpoint DIR" in line).split()
    return words[words.index("--address") + 1]


def test_serve_answers_recommend_and_stops_on_sigterm(tmp_path):
    attnrec = console_script()
    port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own Ray, as on a fresh machine
    serve = subprocess.Popen([attnrec, "serve", "--port", str(port), "--http-port", str(http_port), "--num-cpus", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                             start_new_session=True)
    seen: list[str] = []
    try:
        lines = lines_of(serve)
        assert wait_for(lines, READY, START_BOUND_S, seen), "".join(seen[-40:])
        assert wait_for(lines, "Ctrl-C stops", 30, seen), "".join(seen[-40:])  # the rest of the ready message
        page = f"http://127.0.0.1:{http_port}/ui/"
        assert any(line.strip() == f"The page for people: {page}" for line in seen), "".join(seen[-40:])
        with urllib.request.urlopen(page, timeout=60) as r:
            assert b'src="page.js"' in r.read()
        with urllib.request.urlopen(page + "api/recommend?history=1,32,260&k=5", timeout=60) as r:
            shown = json.load(r)
        assert len(shown["items"]) == 5 and shown["cards"]["1"]["title"] == "Toy Story"  # titles from the data
        answer = subprocess.run([attnrec, "recommend", "--target", f"127.0.0.1:{port}", "--history", "1,32,260",
                                 "--k", "5"], capture_output=True, text=True, timeout=120, env=env)
        assert answer.returncode == 0, answer.stderr
        ranked = [line for line in answer.stdout.splitlines() if line.strip()[:2] in {f"{i}." for i in range(1, 6)}]
        assert len(ranked) == 5, answer.stdout
        assert answer.stdout.startswith("model "), answer.stdout
        sockets = listening(serve.pid)  # Serve's and Ray's own, in the default (single-machine) mode
        assert port in {p for _, _, p in sockets} and http_port in {p for _, _, p in sockets}, sockets
        assert [s for s in sockets if s[1] not in LOOPBACK] == []

        rollout = [attnrec, "rollout", "--address", ray_address(seen), "--checkpoint"]
        refused = subprocess.run(rollout + [str(tmp_path / "none")], capture_output=True, text=True, timeout=300,
                                 env=env)
        assert refused.returncode == 2 and "not a checkpoint directory" in refused.stderr, refused.stderr
        other = reweighted_copy(str(DEFAULT_CHECKPOINT), tmp_path / "new")
        rolled = subprocess.run(rollout + [str(other)], capture_output=True, text=True, timeout=300, env=env)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        new_version = rolled.stdout.strip().splitlines()[-1].split()[1]
        answer = subprocess.run([attnrec, "recommend", "--target", f"127.0.0.1:{port}", "--history", "1,32,260"],
                                capture_output=True, text=True, timeout=120, env=env)
        assert answer.stdout.startswith(f"model {new_version};"), (answer.stdout, rolled.stdout)

        with RecommenderClient(f"127.0.0.1:{port}", timeout=120) as client, ThreadPoolExecutor(16) as pool:
            client.recommend(["1"], k=1)  # connected: the calls below reach the server at once
            in_flight = [pool.submit(call_in_flight, client, i) for i in range(16)]
            time.sleep(0.5)  # calls in flight when the stop comes are finished
            serve.send_signal(signal.SIGTERM)
            outcomes = [f.result() for f in in_flight]
        assert outcomes == ["OK"] * 16, outcomes
        assert serve.wait(timeout=STOP_BOUND_S) == 0, "".join(seen[-40:])
        wait_for(lines, "\0", 5, seen)  # drain what it printed last
        assert any("stopping" in line for line in seen), "".join(seen[-40:])
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=30)


def test_a_taken_port_or_a_bad_model_flag_is_a_clear_error_not_a_traceback(tmp_path):
    """Both fail before Ray starts: one line on stderr and exit code 2."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flags, message in ((["--metrics-port", str(port)], f"metrics port {port} is in use"),
                               (["--model", "a=somewhere"], "expected NAME=DIR:SHARE"),
                               (["--model", f"a={tmp_path}:1"], "not a checkpoint directory")):
            done = subprocess.run([sys.executable, "-m", "attnrec.serving.cli", "serve", *flags, "--port",
                                   str(free_port()), "--http-port", str(free_port())],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
