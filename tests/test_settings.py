"""config.py: every setting parsed when a process starts; a malformed one stops it with one line.

The parsing itself is checked in process, setting by setting. Then the
processes: the Procfile's web, worker and release lines, and a `relay` CLI
command, each started with a malformed setting, exit at once, non-zero, with
one line naming the variable and no traceback.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.processes import ROOT, free_port
from webapp.settings import config
from webapp.settings.config import SETTINGS, Rate, SettingError, from_env

# -- parsing, in process ---------------------------------------------------------


def test_defaults_parse(tmp_path: Path) -> None:
    settings = from_env({}, project_root=tmp_path)
    assert settings["RATE_LIMIT"] == Rate(20, 60)
    assert settings["SESSION_RATE_LIMIT"] == Rate(60, 60)
    assert settings["REDIS_URL"] == config.DEFAULT_REDIS_URL
    assert settings["LOG_FORMAT"] == "text" and settings["LOG_LEVEL"] == "INFO"
    assert settings["CORS_ORIGINS"] == ()
    assert settings["AUTH_JWT_SECRET"] is None and settings["METRICS_TOKEN"] is None
    assert settings["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert settings["HUB_BUFFER_BYTES"] == 32 * 2**20
    assert settings["HOST"] == "0.0.0.0"  # Heroku's router reaches a dyno on any interface
    assert settings["FAST_POLL"] is True


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("RATE_LIMIT", "5/10s", Rate(5, 10)),
        ("RATE_LIMIT", " 100 / hour ", Rate(100, 3600)),
        ("SESSION_RATE_LIMIT", "3/day", Rate(3, 86400)),
        ("WORKER_CONCURRENCY", "8", 8),
        ("SSE_MAX_SECONDS", "0.5", 0.5),
        ("REDIS_SSL_VERIFY", "off", False),
        ("REDIS_CLUSTER", "Yes", True),
        ("FAST_POLL", "false", False),
        ("FAST_POLL", " 0 ", False),
        ("LOG_LEVEL", "debug", "DEBUG"),
        ("LOG_FORMAT", "JSON", "json"),
        ("DATABASE_URL", "postgres://u:p@db.example.com:5432/relay", None),
        ("REDIS_URL", "rediss://:p@redis.example.com:6380", "rediss://:p@redis.example.com:6380"),
        ("REDIS_URL", "unix:///tmp/redis.sock?db=2", "unix:///tmp/redis.sock?db=2"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("SYSTEM_PROMPT", "  Be brief.  ", "  Be brief.  "),
        ("SYSTEM_PROMPT", "", ""),
        ("WORKER_CONCURRENCY", "  ", 32),  # blank: the default
        ("HOST", "127.0.0.1", "127.0.0.1"),
        ("HOST", "::1", "::1"),
        ("HOST", "LocalHost", "localhost"),
        ("HUB_BUFFER_BYTES", "64MiB", 64 * 2**20),
        ("HUB_BUFFER_BYTES", " 5000 kB ", 5_000_000),
        ("HUB_BUFFER_BYTES", "2GB", 2 * 10**9),
        ("HUB_BUFFER_BYTES", "3000000", 3_000_000),
        (
            "CORS_ORIGINS",
            "https://App.example.com, http://localhost:5173",
            ("https://app.example.com", "http://localhost:5173"),
        ),
    ],
)
def test_good_values_parse(name: str, raw: str, value: object) -> None:
    settings = from_env({name: raw})
    if name == "DATABASE_URL":
        assert (
            settings["SQLALCHEMY_DATABASE_URI"]
            == "postgresql+psycopg://u:p@db.example.com:5432/relay"
        )
    else:
        assert settings[name] == value


def public_key_pem(one_line: bool = False) -> str:
    # A DER SEQUENCE is all the check looks at; the key itself is checked by PyJWT when used.
    body = base64.b64encode(b"\x30\x59" + bytes(89)).decode()
    pem = f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"
    return pem.replace("\n", "\\n") if one_line else pem


def test_tool_settings_parse() -> None:
    defaults = from_env({})
    assert defaults["TOOLS_MODULE"] is None
    assert defaults["MCP_SERVERS"] == () and defaults["CLIENT_TOOLS"] == ()
    assert defaults["MAX_TOOL_STEPS"] == 8 and defaults["TOOL_TIMEOUT_SECONDS"] == 30.0
    settings = from_env(
        {
            "TOOLS_MODULE": "myapp.tools",
            "MCP_SERVERS": '[{"url": "https://mcp.example.com/mcp", '
            '"headers": {"Authorization": "Bearer t"}, "approval": "never"}, '
            '{"url": "http://127.0.0.1:8001/mcp"}]',
            "CLIENT_TOOLS": '[{"name": "pick_color", "description": "Ask the user.", '
            '"parameters": {"type": "object", "properties": {"hint": {"type": "string"}}}}, '
            '{"name": "confirm"}]',
            "MAX_TOOL_STEPS": "0",
            "TOOL_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert settings["TOOLS_MODULE"] == "myapp.tools"
    assert settings["MCP_SERVERS"] == (
        config.McpServerConfig(
            "https://mcp.example.com/mcp", {"Authorization": "Bearer t"}, "never"
        ),
        config.McpServerConfig("http://127.0.0.1:8001/mcp", {}, "destructive"),
    )
    pick, confirm = settings["CLIENT_TOOLS"]
    assert pick.name == "pick_color" and pick.description == "Ask the user."
    assert pick.parameters["properties"] == {"hint": {"type": "string"}}
    assert confirm == config.ClientToolConfig("confirm", "", {"type": "object", "properties": {}})
    assert (settings["MAX_TOOL_STEPS"], settings["TOOL_TIMEOUT_SECONDS"]) == (0, 2.5)


def test_a_malformed_tool_setting_says_where_and_shows_no_header() -> None:
    raw = '[{"url": "http://h/mcp", "headers": {"Authorization": "Bearer hunter2"}}, {"url": 1}]'
    with pytest.raises(SettingError) as caught:
        from_env({"MCP_SERVERS": raw})
    assert "item 2's url is not" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(SettingError, match="the name 'pick' is used twice"):
        from_env({"CLIENT_TOOLS": '[{"name": "pick"}, {"name": "pick"}]'})


def test_access_control_settings_parse() -> None:
    secret = "s" * 32
    settings = from_env({"AUTH_JWT_SECRET": secret, "AUTH_JWT_AUDIENCE": "relay"})
    assert (settings["AUTH_JWT_SECRET"], settings["AUTH_JWT_AUDIENCE"]) == (secret, "relay")
    # A PEM in a config var, its newlines written as `\n`.
    settings = from_env({"AUTH_JWT_PUBLIC_KEY": public_key_pem(one_line=True)})
    assert settings["AUTH_JWT_PUBLIC_KEY"] == public_key_pem().strip()
    assert from_env({"METRICS_TOKEN": "t" * 16})["METRICS_TOKEN"] == "t" * 16


# Malformed values by parser kind; every setting whose parser can refuse is covered.
MALFORMED_BY_KIND = {
    config.Integer: ["ten", "1.5", "-99999999"],
    config.Number: ["soon", "nan", "inf", "-1"],
    config.Boolean: ["maybe", "2"],
    config.ByteSize: ["lots", "-1", "1.5GiB", "64 MiB/s", "64XB", "1023KiB"],
    config.Choice: ["xml"],
    config.RateSpec: ["lots", "0/minute", "5/fortnight", "5/0s"],
    config.RedisUrl: ["http://localhost:6379", "redis://", "redis://h:port/0", "redis://h/x"],
    config.DatabaseUrl: ["mysql://u:p@h/db", "postgres://", "relay.sqlite3"],
    config.HttpUrl: ["localhost:8000", "ftp://h/v1", "http://"],
    config.PublicKeyPem: [
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----",
    ],
    config.Host: ["0.0.0.0:5000", "http://localhost", "-dash.example.com", "a b", "300.1.1.1"],
    config.Origins: [
        "*",
        "https://a.example.com/chat",
        "app.example.com",
        "https://a.example.com:0",
    ],
    config.ImportPath: ["myapp/tools.py", "myapp.", "2fast.tools", "my app"],
    config.McpServers: [
        "http://mcp.example.com/mcp",  # not JSON
        '{"url": "http://mcp.example.com/mcp"}',  # not an array
        '["http://mcp.example.com/mcp"]',
        '[{"headers": {}}]',
        '[{"url": "mcp.example.com/mcp"}]',
        '[{"url": "ftp://mcp.example.com"}]',
        '[{"url": "http://h/mcp", "headers": {"Authorization": 42}}]',
        '[{"url": "http://h/mcp", "approval": "sometimes"}]',
        '[{"url": "http://h/mcp", "aproval": "never"}]',
        '[{"url": "http://h/mcp"}, {"url": "http://h/mcp"}]',
    ],
    config.ClientTools: [
        "pick_color",
        '{"name": "pick_color"}',
        '[{"description": "no name"}]',
        '[{"name": "pick color"}]',
        '[{"name": "pick.color"}]',
        '[{"name": "' + "x" * 65 + '"}]',
        '[{"name": "pick", "description": 3}]',
        '[{"name": "pick", "parameters": {"type": "string"}}]',
        '[{"name": "pick", "parameters": []}]',
        '[{"name": "pick", "params": {}}]',
        '[{"name": "pick"}, {"name": "pick"}]',
    ],
}


def malformed_cases() -> list[tuple[str, str]]:
    cases = []
    for setting in SETTINGS:
        kind = type(setting.parse)
        values = list(MALFORMED_BY_KIND.get(kind, []))
        if isinstance(setting.parse, config.Integer):
            values.append(str(setting.parse.low - 1))
            if setting.parse.high is not None:
                values.append(str(setting.parse.high + 1))
        if isinstance(setting.parse, config.Text) and setting.parse.min_chars > 1:
            values.append("x" * (setting.parse.min_chars - 1))
        if isinstance(setting.parse, config.Text) and setting.parse.visible_ascii:
            values.append("has a space" + "x" * 20)
        cases += [(setting.name, value) for value in values]
    return cases


@pytest.mark.parametrize(("name", "raw"), malformed_cases())
def test_a_malformed_value_is_one_line_naming_it(name: str, raw: str) -> None:
    with pytest.raises(SettingError) as caught:
        from_env({name: raw})
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"{name}=") and "expected " in line
    setting = config.SETTINGS_BY_NAME[name]
    if setting.secret:
        assert raw not in line and "hidden" in line
    elif "@" not in raw:
        assert repr(raw) in line


def test_every_setting_that_can_refuse_is_covered() -> None:
    free_text = {
        s.name
        for s in SETTINGS
        if isinstance(s.parse, config.Text) and s.parse.min_chars == 1 and not s.parse.visible_ascii
    }
    # Any text is a model name, an API key, a system prompt or an audience.
    assert free_text == {"OPENAI_API_KEY", "LLM_MODEL", "SYSTEM_PROMPT", "AUTH_JWT_AUDIENCE"}
    covered = {name for name, _ in malformed_cases()}
    assert covered == {s.name for s in SETTINGS} - free_text - {"PROMETHEUS_MULTIPROC_DIR"}


def test_a_file_is_not_a_metrics_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingError, match="PROMETHEUS_MULTIPROC_DIR=.*it is a file"):
        from_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "file")})
    assert from_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "new")})


def test_passwords_and_secrets_never_reach_the_line() -> None:
    with pytest.raises(SettingError) as caught:
        from_env({"DATABASE_URL": "mysql://relay:hunter2@db.example.com/relay"})
    assert "hunter2" not in str(caught.value)
    assert "mysql://relay:****@db.example.com/relay" in str(caught.value)
    with pytest.raises(SettingError) as caught:
        from_env({"METRICS_TOKEN": "hunter2"})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:****@h:6379/0"),
        ("postgres://relay:hunter2@h/db", "postgres://relay:****@h/db"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("sqlite:////tmp/x.sqlite3", "sqlite:////tmp/x.sqlite3"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert config.mask_url(url) == masked


def test_settings_wrong_together() -> None:
    with pytest.raises(SettingError, match="AUTH_JWT_SECRET and AUTH_JWT_PUBLIC_KEY are both set"):
        from_env({"AUTH_JWT_SECRET": "s" * 32, "AUTH_JWT_PUBLIC_KEY": public_key_pem()})
    # An audience with no key would look like access control while it is off.
    with pytest.raises(SettingError, match="AUTH_JWT_AUDIENCE='relay' is set without"):
        from_env({"AUTH_JWT_AUDIENCE": "relay"})


def test_redis_url_defaults_to_the_embedded_redis_while_scripts_run_is_up(tmp_path: Path) -> None:
    assert from_env({}, project_root=tmp_path)["REDIS_URL"] == config.DEFAULT_REDIS_URL
    (tmp_path / "var").mkdir()
    (tmp_path / config.EMBEDDED_REDIS_URL_FILE).write_text("redis://127.0.0.1:40123/0\n")
    settings = from_env({}, project_root=tmp_path)
    assert settings["REDIS_URL"] == "redis://127.0.0.1:40123/0"
    assert settings["REDIS_URL_SOURCE"] == str(config.EMBEDDED_REDIS_URL_FILE)
    # REDIS_URL, when set, wins.
    env = {"REDIS_URL": "redis://10.0.0.1:6379/0"}
    assert from_env(env, project_root=tmp_path)["REDIS_URL"] == "redis://10.0.0.1:6379/0"
    (tmp_path / config.EMBEDDED_REDIS_URL_FILE).write_text("garbage")
    with pytest.raises(SettingError, match=r"REDIS_URL='garbage' \(read from var/embedded-redis"):
        from_env({}, project_root=tmp_path)


def test_the_arbiter_imports_nothing_gevent_must_patch_first() -> None:
    """gunicorn.conf.py parses the settings in the arbiter, before the gevent workers fork."""
    probe = (
        "import runpy, sys; runpy.run_path('gunicorn.conf.py'); "
        "print(sorted(m for m in ('ssl', 'redis', 'sqlalchemy', 'psycopg', 'flask', 'gevent') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- processes ------------------------------------------------------------------

# The examples, and a setting only gunicorn reads, a secret, a boolean.
# (The parsers of every setting are checked above; this is about the processes.)
MALFORMED_SETTINGS = {
    "RATE_LIMIT": "lots",
    "WORKER_CONCURRENCY": "ten",
    "SSE_MAX_SECONDS": "-1",
    "LOG_FORMAT": "xml",
    "DATABASE_URL": "mysql://relay:hunter2@db.example.com/relay",
    "PORT": "web",
    "AUTH_JWT_SECRET": "hunter2",
    "REDIS_CLUSTER": "maybe",
    "CLIENT_TOOLS": '[{"name": "pick color"}]',
}


def procfile_argv(kind: str) -> list[str]:
    """A Procfile line as argv, run with this interpreter (`exec gunicorn ...` -> python -m gunicorn ...)."""
    lines = dict(
        line.split(": ", 1)
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    words = lines[kind].split()
    if words[0] == "exec":
        words = words[1:]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    return [sys.executable, "-m", *words]


# The flask CLI: the Procfile's release line (`flask --app wsgi db upgrade`);
# `relay ...` commands load the app the same way, through wsgi.py.
PROCESSES = {kind: procfile_argv(kind) for kind in ("web", "worker", "release")}


@pytest.fixture(scope="module")
def start_env(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Good settings, and a Redis port where nothing listens: nothing may get that far."""
    folder = tmp_path_factory.mktemp("settings")
    return dict(
        base_env,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        DATABASE_URL=f"sqlite:///{folder / 'relay.sqlite3'}",
        PORT=str(free_port()),
    )


def run_with(env: dict[str, str], process: str, name: str, raw: str) -> tuple[int, str]:
    done = subprocess.run(
        PROCESSES[process],
        cwd=ROOT,
        env=dict(env, **{name: raw}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
def test_each_process_stops_on_a_malformed_setting_with_one_line(start_env: dict) -> None:
    cases = [(p, n, v) for n, v in MALFORMED_SETTINGS.items() for p in PROCESSES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: run_with(start_env, *case), cases))
    failures = []
    for (process, name, raw), (status, output) in zip(cases, results, strict=True):
        naming = [line for line in output.splitlines() if name in line]
        if status == 0 or len(naming) != 1 or "Traceback" in output or "expected" not in output:
            failures.append(f"{process} {name}={raw!r}: exit {status}\n{output[-2000:]}")
        assert "hunter2" not in output
    assert not failures, "\n\n".join(failures)
