"""The release workflow's promises that actionlint does not check (`make lint` runs actionlint
on it): least permissions, actions pinned to commits, both architectures built by `make image`,
pushed by digest with skopeo to the owner's namespace, the digests in the job summary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "release.yml"


def workflow() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def scripts(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_it_runs_on_version_tags_with_least_permissions():
    doc = workflow()
    assert doc["on"] == {"push": {"tags": ["v*"]}}
    assert doc["permissions"] == {"contents": "read", "packages": "write"}
    assert all("permissions" not in job for job in doc["jobs"].values())  # nothing widens them


def test_every_action_is_pinned_to_a_commit():
    uses = re.findall(r"uses:\s*(\S+)", WORKFLOW.read_text())
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref


def test_both_architectures_are_built_by_make_image_and_pushed_by_digest():
    jobs = workflow()["jobs"]
    build = jobs["image"]
    assert [entry["arch"] for entry in build["strategy"]["matrix"]["include"]] == ["amd64", "arm64"]
    text = scripts(build)
    assert 'make image "ARCH=$ARCH"' in text
    assert "skopeo copy --preserve-digests" in text and '"docker://$IMAGE@$digest"' in text
    assert "ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/talbench" in text  # the owner's namespace, lowercase
    assert "GITHUB_STEP_SUMMARY" in text
    index = jobs["index"]
    assert index["needs"] == "image" and "GITHUB_STEP_SUMMARY" in scripts(index)
    assert "secrets.GITHUB_TOKEN" in WORKFLOW.read_text() and "${{ secrets" not in text + scripts(index)
