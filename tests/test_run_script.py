"""./scripts/run on a fresh clone, as a new user runs it, and the README's curl block.

The clone is the working tree's files as git sees them (tracked, and new
ones not ignored, so uncommitted edits are tested too) copied to a temporary
folder without .venv or var/: scripts/run builds its own .venv from
requirements.txt, and nothing of the test venv can hide a missing pin
(issue 13). It is started in a process group of its own, as a terminal
starts a foreground command, and stopped the way a terminal's Ctrl-C does:
SIGINT to the whole group.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ROOT, free_port, have, wait_for
from webapp.write.demo_model import DemoModel

# The first run builds .venv: minutes on a cold pip cache.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TEST_VENV_BIN = str(Path(sys.executable).parent)
# A prompt whose demo answer takes about 3.5 s at 0.02 s a word: long enough
# to be mid-answer when Ctrl-C comes.
LONG_PROMPT = " ".join(["stream"] * 33)


def copy_working_tree(dest: Path) -> Path:
    """The files a commit of the working tree would hold, copied to `dest`."""
    if not have("git") or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)  # keeps scripts/run executable
    return dest


def user_env(**extra: str) -> dict[str, str]:
    """A new user's shell: no service URLs, no model key, not inside the test venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "DATABASE_", "OPENAI_", "LLM_", "PYTHON", "VIRTUAL_ENV"))
    }
    path = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(entry for entry in path if entry != TEST_VENV_BIN)
    env.update(extra)
    return env


@dataclass
class RunScript:
    """One `./scripts/run`, in a process group of its own, output to a log file."""

    clone: Path
    port: int
    proc: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, clone: Path, log_path: Path, **env: str) -> RunScript:
        port = int(env.setdefault("PORT", str(free_port())))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["./scripts/run"],
                cwd=clone,
                env=user_env(**env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group, as a terminal's job
            )
        return cls(clone, port, proc, log_path)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        def seen() -> re.Match | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"scripts/run exited:\n{self.log()[-4000:]}")
            return re.search(pattern, self.log(), re.M)

        return wait_for(seen, timeout=timeout, interval=0.1, what=f"{pattern!r} from scripts/run")

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to every process of the group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.ctrl_c()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_working_tree(tmp_path_factory.mktemp("fresh-clone"))


@pytest.fixture(scope="module")
def running(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunScript]:
    """The README's first command on the fresh clone, up and ready."""
    log_path = tmp_path_factory.mktemp("run-logs") / "scripts-run.log"
    run = RunScript.start(clone, log_path, DEMO_DELAY_SECONDS="0.02", SSE_MAX_SECONDS="5")
    try:
        run.wait_for_line(r"relay is ready on http://127\.0\.0\.1:\d+/", timeout=600)
        yield run
    finally:
        run.stop()


def readme_curl_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Try it with curl", 1)[1].split("\n## ", 1)[0]


def readme_curl_blocks(port: int) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", readme_curl_section(), re.S)
    return [block.replace("localhost:5000", f"127.0.0.1:{port}") for block in blocks]


def readme_curl_example(port: int) -> str:
    return readme_curl_blocks(port)[0]


def with_sid(session_id: str, commands: str) -> subprocess.CompletedProcess[str]:
    """README commands run by bash, with `$sid` set as the README's first block sets it."""
    shown = subprocess.run(
        ["bash", "-c", f"sid={session_id}\n{commands}"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    return shown


def readme_long_poll_example(port: int) -> str:
    command = re.search(r"`(curl [^`]*/poll[^`]*)`", readme_curl_section())[1]
    return command.replace("localhost:5000", f"127.0.0.1:{port}")


def test_help_prints_usage_before_any_set_up(tmp_path: Path) -> None:
    tree = copy_working_tree(tmp_path)
    shown = subprocess.run(
        ["./scripts/run", "--help"],
        cwd=tree,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: scripts/run")
    assert "Ctrl-C" in shown.stdout and "var/embedded-redis.url" in shown.stdout
    assert not (tree / ".venv").exists()  # usage costs no install


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
def test_fresh_clone_runs_and_the_readme_curl_block_streams(running: RunScript) -> None:
    # scripts/run built a .venv of the clone's own, from requirements.txt.
    assert (running.clone / ".venv" / "bin" / "gunicorn").exists()
    assert httpx.get(f"{running.base_url}/readyz", timeout=5).status_code == 200
    # The embedded Redis's URL is where `flask --app wsgi relay ...` looks for it.
    embedded = running.wait_for_line(r"embedded Redis at (redis://\S+)", timeout=5)[1]
    url_file = running.clone / "var" / "embedded-redis.url"
    assert url_file.read_text().strip() == embedded

    shown = subprocess.run(
        ["bash", "-c", readme_curl_example(running.port)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=running.clone,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith('{"session_id"')  # the POST's answer
    assert '"model":"demo"' in shown.stdout
    texts: dict[str, list[str]] = {"chunk": [], "reasoning": []}
    event = ""
    for line in shown.stdout.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith('data: {"message_id"') and event in texts:
            texts[event].append(json.loads(line[6:])["text"])
    assert "".join(texts["chunk"]) == DemoModel.answer("Hello!")
    # The demo model thinks first (issue 16), so a newcomer sees reasoning stream.
    assert "".join(texts["reasoning"]) == DemoModel.reasoning("Hello!")
    assert "event: end" in shown.stdout

    # The long-poll line, with the shell's $sid from the block above.
    # (The POST's answer ends without a newline: the stream follows on its line.)
    session_id = json.JSONDecoder().raw_decode(shown.stdout)[0]["session_id"]
    polled = with_sid(session_id, readme_long_poll_example(running.port))
    events = json.loads(polled.stdout)["events"]
    assert [e["event"] for e in events][-1] == "end", polled.stdout[-2000:]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets that listen on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        rows = table.read_text().splitlines()[1:] if table.exists() else []
        for row in rows:
            local, _remote, state = row.split()[1:4]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)  # 32-bit words in the kernel's (little-endian) order
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
            found.add(socket.inet_ntop(family, packed))
    return found


def test_it_listens_on_this_machine_only(running: RunScript) -> None:
    # A development server with access control off is not for the network (issue 22).
    assert listening_addresses(running.port) == {"127.0.0.1"}


def test_host_says_where_to_listen_and_is_checked_as_the_web_process_checks_it() -> None:
    dev = load_dev_script()
    assert dev.listen_on({}) == ("127.0.0.1", 5000)
    assert dev.listen_on({"HOST": " 0.0.0.0 ", "PORT": "5001"}) == ("0.0.0.0", 5001)
    # Listening on every interface, the script still asks (and shows) this machine's address.
    assert dev.base_url("0.0.0.0", 5001) == "http://127.0.0.1:5001"
    assert dev.base_url("::", 5001) == "http://[::1]:5001"
    with pytest.raises(SystemExit, match=r"^scripts/run: HOST='0\.0\.0\.0:80' is invalid"):
        dev.listen_on({"HOST": "0.0.0.0:80"})
    with pytest.raises(SystemExit, match=r"^scripts/run: PORT='http' is invalid"):
        dev.listen_on({"PORT": "http"})


def json_values(text: str) -> list[Any]:
    """The JSON values printed one after another (curl -s adds no newline)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        at += len(text[at:]) - len(text[at:].lstrip())
    return values


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
def test_the_readme_tour_gives_the_whole_answer_and_then_the_snapshot(running: RunScript) -> None:
    session_id = httpx.post(f"{running.base_url}/api/sessions", timeout=10).json()["session_id"]
    _, tour = readme_curl_blocks(running.port)
    whole, snapshot = json_values(with_sid(session_id, tour).stdout)
    assert (whole["status"], whole["content"]) == ("done", DemoModel.answer("And again?"))
    assert [m["id"] for m in snapshot["messages"]][-1] == whole["id"]
    assert snapshot["active_message_id"] is None and snapshot["cursor"] != "0-0"


def session_ids_alive(sessions: set[int]) -> list[str]:
    """Live processes (not zombies) in any of these sessions."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone while we looked
        state, session = fields[0], int(fields[3])
        if session in sessions and state != "Z":
            found.append(stat.parent.name)
    return found


def test_ctrl_c_finishes_the_answer_then_stops_web_worker_and_redis_last(
    running: RunScript,
) -> None:
    with httpx.Client(base_url=running.base_url, timeout=30) as http:
        session_id = http.post("/api/sessions").json()["session_id"]
        posted = http.post(f"/api/sessions/{session_id}/messages", json={"content": LONG_PROMPT})
        assert posted.status_code == 202, posted.text
        message_id = posted.json()["message_id"]

        def streaming() -> bool:
            snapshot = http.get(f"/api/sessions/{session_id}").json()
            answer = snapshot["messages"][-1]
            return answer["status"] == "streaming" and answer["content"] != ""

        wait_for(streaming, timeout=30, what="the answer to start streaming")
    interrupted_at = datetime.now(UTC).replace(tzinfo=None)
    running.ctrl_c()
    assert running.proc.wait(60) == 0, running.log()[-4000:]
    log = running.log()

    # Web and worker first, the embedded Redis last, nothing left behind.
    stops = [log.index(line) for line in ("web.1 stopped", "worker.1 stopped")]
    assert max(stops) < log.index("embedded Redis stopped"), log[-4000:]
    pids = {int(pid) for pid in re.findall(r"\(pid=(\d+)\)", log)}
    assert len(pids) == 4, log  # release, web, worker, redis-server
    assert session_ids_alive(pids) == [], log[-4000:]
    assert "Connection refused" not in log and "Error 111" not in log, log[-4000:]
    assert not (running.clone / "var" / "embedded-redis.url").exists()

    # The answer under way at Ctrl-C was finished and stored before the worker left.
    with sqlite3.connect(running.clone / "var" / "relay.sqlite3") as sql:
        status, content, finished_at = sql.execute(
            "SELECT status, content, finished_at FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
    assert (status, content) == ("done", DemoModel.answer(LONG_PROMPT))
    assert datetime.fromisoformat(finished_at) > interrupted_at


def test_a_busy_port_gives_one_clear_line(clone: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        shown = subprocess.run(
            ["./scripts/run"],
            cwd=clone,
            env=user_env(PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert shown.returncode != 0
    assert shown.stdout == ""  # nothing started: no Redis, no release
    # pip may warn about this machine's extra index locations; ours is the last line.
    last = shown.stderr.strip().splitlines()[-1]
    assert last.startswith(f"scripts/run: port {port} is already in use"), shown.stderr
    assert "Traceback" not in shown.stderr


def load_dev_script():
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "scripts" / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_url_is_printed_only_once_readyz_answers_200(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """scripts/run's readiness gate against a /readyz that answers 503 until told."""
    dev = load_dev_script()
    ready = threading.Event()
    asked: list[bool] = []  # whether it was ready, per request
    returned: list[bool] = []

    class Readyz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(ready.is_set())
            status = 200 if ready.is_set() else 503
            body = b'{"redis": "ok"}' if ready.is_set() else b'{"redis": "unreachable"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = dev.Output(width=8)
    gate = threading.Thread(
        target=lambda: returned.append(
            dev.wait_until_ready(dev.base_url(*server.server_address), [], dev.Stop(), out)
        )
    )
    try:
        gate.start()
        wait_for(lambda: asked.count(False) >= 3, timeout=10, what="three 503s")
        assert gate.is_alive()  # still waiting: no URL yet
        ready.set()
        gate.join(10)
        assert returned == [True] and asked[-1] is True
    finally:
        server.shutdown()
        server.server_close()
    said = capsys.readouterr().out
    assert said.count("not ready yet: /readyz answered 503") == 1  # once per reason
