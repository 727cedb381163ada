"""The README's run command brings up web + worker + embedded Redis, and its curl example streams."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT, Process, free_port, have, wait_until_answers
from webapp.llm import DemoModel

pytestmark = pytest.mark.slow


def readme_curl_example(port: int) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it with curl", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)[1]
    return block.replace("localhost:5000", f"127.0.0.1:{port}")


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
def test_readme_run_command_serves_the_demo_answer(log_dir: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env.update(
        PORT=str(port), DEMO_DELAY_SECONDS="0.002", SSE_MAX_SECONDS="3", PYTHONUNBUFFERED="1"
    )
    run = Process("scripts-run", ["./scripts/run"], env, log_dir).start()
    try:
        wait_until_answers(run, f"http://127.0.0.1:{port}/readyz", timeout=90)
        shown = subprocess.run(
            ["bash", "-c", readme_curl_example(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith('{"session_id"')  # the POST's answer
        assert '"model":"demo"' in shown.stdout
        chunks = [
            json.loads(line[6:])["text"]
            for line in shown.stdout.splitlines()
            if line.startswith('data: {"message_id"') and '"text"' in line
        ]
        assert "".join(chunks) == DemoModel.answer("Hello!")
        assert "event: end" in shown.stdout
    finally:
        run.signal(signal.SIGTERM)
        run.proc.wait(30)
    assert "embedded Redis at redis://" in run.log_text()
    assert "web.1 stopped" in run.log_text() and "worker.1 stopped" in run.log_text()
