"""app.json, the Heroku Button's manifest, against Heroku's app.json schema rules.

The rules are those of https://devcenter.heroku.com/articles/app-json-schema:
known top-level keys with their types; `env` entries as a string or an
object of `description`, `value` (a string), `required` (a boolean, true
when left out) and `generator` (only "secret"); `addons` as "service:plan"
strings or `{"plan", "as", "options"}` objects; `formation` as process type
-> `{"quantity", "size"}`. On top, what keeps the manifest true to the rest
of the repository: the add-on plans are docs/deploy.md's, the process types
the Procfile's, every variable is documented in the docs, and a required one
can be filled in without the user's help.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.processes import ROOT

TOP_LEVEL = {
    "name": str,
    "description": str,
    "keywords": list,
    "website": str,
    "repository": str,
    "logo": str,
    "success_url": str,
    "scripts": dict,
    "env": dict,
    "formation": dict,
    "image": str,
    "addons": list,
    "buildpacks": list,
    "environments": dict,
    "stack": str,
}
ENV_FIELDS = {"description": str, "value": str, "required": bool, "generator": str}
# Heroku's dyno sizes (https://devcenter.heroku.com/articles/dyno-types).
DYNO_SIZES = {
    "eco",
    "basic",
    "standard-1x",
    "standard-2x",
    "performance-m",
    "performance-l",
    "performance-l-ram",
    "performance-xl",
    "performance-2xl",
}
CONFIG_VAR = re.compile(r"^[A-Z][A-Z0-9_]*$")
ADDON_PLAN = re.compile(r"^[a-z0-9][a-z0-9-]*(:[a-z0-9][a-z0-9-]*)?$")


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads((ROOT / "app.json").read_text())


def readme() -> str:
    return (ROOT / "README.md").read_text()


def docs() -> str:
    """README.md and every page of docs/."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text() for page in pages)


def procfile_types() -> set[str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {line.split(":", 1)[0] for line in lines if line.strip() and not line.startswith("#")}


def addon_plan(addon: str | dict[str, Any]) -> str:
    return addon if isinstance(addon, str) else addon["plan"]


def test_top_level_keys_are_heroku_s_with_their_types(manifest: dict[str, Any]) -> None:
    assert set(manifest) <= set(TOP_LEVEL), set(manifest) - set(TOP_LEVEL)
    for key, value in manifest.items():
        assert isinstance(value, TOP_LEVEL[key]), key
    assert 3 <= len(manifest["name"]) <= 30
    assert 0 < len(manifest["description"]) <= 140
    assert all(isinstance(word, str) for word in manifest.get("keywords", []))


def test_env_entries_are_described_and_typed(manifest: dict[str, Any]) -> None:
    assert manifest["env"], "the Button should ask for the model's settings"
    for name, entry in manifest["env"].items():
        assert CONFIG_VAR.match(name), name
        assert isinstance(entry, dict), f"{name}: give it a description"
        assert set(entry) <= set(ENV_FIELDS), (name, set(entry) - set(ENV_FIELDS))
        for field, value in entry.items():
            assert isinstance(value, ENV_FIELDS[field]), (name, field)
        assert entry.get("description", "").strip(), f"{name} has no description"
        assert entry.get("generator", "secret") == "secret", name
        assert not ("value" in entry and "generator" in entry), name
        if entry.get("required", True):  # Heroku's default
            assert "value" in entry or "generator" in entry, f"{name} would block the Button"


def test_secrets_are_generated_not_shipped(manifest: dict[str, Any]) -> None:
    assert manifest["env"]["METRICS_TOKEN"].get("generator") == "secret"
    for name, entry in manifest["env"].items():
        if re.search(r"KEY|SECRET|TOKEN|PASSWORD", name):
            assert "value" not in entry, f"{name}: a secret value in the repository"


def test_every_variable_is_documented(manifest: dict[str, Any]) -> None:
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", docs()))
    assert set(manifest["env"]) <= documented, set(manifest["env"]) - documented


def test_addons_are_plans_and_attachments(manifest: dict[str, Any]) -> None:
    for addon in manifest["addons"]:
        if isinstance(addon, str):
            assert ADDON_PLAN.match(addon), addon
            continue
        assert isinstance(addon, dict) and set(addon) <= {"plan", "as", "options"}, addon
        assert isinstance(addon["plan"], str) and ADDON_PLAN.match(addon["plan"]), addon
        assert CONFIG_VAR.match(addon.get("as", "A")), addon
        assert isinstance(addon.get("options", {}), dict), addon
    # The two services the app reads its URLs from.
    attachments = {addon.get("as") for addon in manifest["addons"] if isinstance(addon, dict)}
    assert attachments == {"DATABASE", "REDIS"}  # DATABASE_URL, REDIS_URL


def test_addon_plans_are_the_deploy_page_s(manifest: dict[str, Any]) -> None:
    in_docs = set(
        re.findall(r"heroku addons:create (\S+)", (ROOT / "docs" / "deploy.md").read_text())
    )
    assert in_docs, "docs/deploy.md names the add-ons"
    assert {addon_plan(addon) for addon in manifest["addons"]} == in_docs


def test_formation_runs_the_procfile_s_web_and_worker(manifest: dict[str, Any]) -> None:
    formation = manifest["formation"]
    # `release` is a phase, not a dyno: Heroku runs it on every deploy, the first included.
    assert set(formation) == procfile_types() - {"release"} == {"web", "worker"}
    for name, dynos in formation.items():
        assert set(dynos) <= {"quantity", "size"}, name
        assert isinstance(dynos["quantity"], int) and dynos["quantity"] >= 1, name
        assert dynos.get("size", "basic") in DYNO_SIZES, name


def test_buildpack_is_python(manifest: dict[str, Any]) -> None:
    assert manifest["buildpacks"] == [{"url": "heroku/python"}]


def test_readme_has_the_deploy_button() -> None:
    assert re.search(
        r"\[!\[Deploy to Heroku\]\(https://www\.herokucdn\.com/deploy/button\.svg\)\]"
        r"\(https://heroku\.com/deploy[^)]*\)",
        readme(),
    )
