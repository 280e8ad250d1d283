"""--image and --image-pull-secret: the reference grammar (distribution/reference's, what the
kubelet and containerd parse), the pull policy it implies, and the one-line refusals."""

from __future__ import annotations

import pytest

from talbench.bench.cli import build_parser
from talbench.bench.cli.run import make_dispatcher
from talbench.bench.dispatch.kube import KubeDispatcher
from talbench.bench.errors import UsageError
from talbench.bench.kube.image import ImageRef, parse_image, parse_pull_secrets, require_image

SHA = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "name", "tag", "digest"),
    [
        ("talbench:v0.1.0", "talbench", "v0.1.0", None),
        ("ghcr.io/owner/talbench:v1", "ghcr.io/owner/talbench", "v1", None),
        (f"ghcr.io/owner/talbench@{SHA}", "ghcr.io/owner/talbench", None, SHA),
        (f"registry.local:5000/a/b/talbench:1.0@{SHA}", "registry.local:5000/a/b/talbench", "1.0", SHA),
        ("localhost:5000/talbench:latest", "localhost:5000/talbench", "latest", None),
        ("[fd00::1]:5000/talbench:v1", "[fd00::1]:5000/talbench", "v1", None),
        ("Registry.Example/tal_bench__x.y-z:V_1.2-rc.3", "Registry.Example/tal_bench__x.y-z", "V_1.2-rc.3", None),
        ("talbench@sha512:" + "ab" * 64, "talbench", None, "sha512:" + "ab" * 64),
    ],
)
def test_valid_references_are_taken_apart(text, name, tag, digest):
    ref = parse_image(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "talbench:v1 ",
        "ghcr.io/Owner/talbench:v1",  # a path component in uppercase
        "ghcr.io/owner/talbench:",  # empty tag
        "ghcr.io/owner/talbench:-v1",  # a tag starts with a word character
        "ghcr.io/owner/talbench:" + "v" * 129,  # a tag has at most 128 characters
        "ghcr.io/owner/talbench@sha256:" + "0" * 63,  # short digest
        "ghcr.io/owner/talbench@sha256:" + "A" * 64,  # uppercase hex
        "ghcr.io/owner/talbench@md5:" + "0" * 32,  # an algorithm the runtimes do not use
        "ghcr.io//talbench:v1",
        "ghcr.io/owner/talbench:v1:v2",
        "https://ghcr.io/owner/talbench:v1",
        "-ghcr.io/talbench:v1",
        "ghcr.io/owner/talbench.:v1",
        "ghcr.io/owner/talbench:v1\n--privileged",
        "oci-archive:results/image/talbench.tar",
        "a/" * 130 + "b:v1",  # a name longer than 255 characters
    ],
)
def test_malformed_references_are_one_line_usage_errors(text):
    with pytest.raises(UsageError) as caught:
        parse_image(text)
    message = str(caught.value)
    assert message.startswith("--image") and "\n" not in message and caught.value.exit_code == 2


def test_an_untagged_name_means_latest_and_is_refused():
    with pytest.raises(UsageError, match=r"name a tag \(ghcr.io/owner/talbench:TAG\) or, better, a digest"):
        parse_image("ghcr.io/owner/talbench")


def test_a_digest_is_pulled_when_missing_and_a_tag_every_time():
    assert parse_image(f"r.example/talbench@{SHA}").pull_policy == "IfNotPresent"
    assert parse_image(f"r.example/talbench:v1@{SHA}").pull_policy == "IfNotPresent"
    assert parse_image("r.example/talbench:v1").pull_policy == "Always"


def test_no_image_is_refused_with_how_to_build_and_push_one():
    with pytest.raises(UsageError, match="--image is required") as caught:
        require_image(None, "0.1.0")
    hint = caught.value.hint or ""
    assert "make image" in hint and "oci-archive:results/image/" in hint and "docker://REGISTRY/talbench:v0.1.0" in hint
    assert "--image REGISTRY/talbench@" in hint
    assert isinstance(require_image(f"r/talbench@{SHA}", "0.1.0"), ImageRef)


def test_pull_secrets_are_repeatable_or_comma_separated_and_checked():
    assert parse_pull_secrets(None) == ()
    assert parse_pull_secrets(["regcred,mirror", "regcred", " other.one "]) == ("regcred", "mirror", "other.one")
    assert parse_pull_secrets("a,b") == ("a", "b")
    for bad in ("Reg_Cred", "-x", "a b", "x" * 254):
        with pytest.raises(UsageError, match="--image-pull-secret"):
            parse_pull_secrets([bad])


def test_the_run_checks_the_image_before_touching_the_cluster():
    def dispatcher(*argv: str) -> KubeDispatcher:
        made = make_dispatcher(build_parser().parse_args(["run", "--scenario", "x", "--target", "kube", *argv]))
        assert isinstance(made, KubeDispatcher)
        return made

    with pytest.raises(UsageError, match="--image is required"):
        dispatcher("--kubeconfig", "/nonexistent")
    with pytest.raises(UsageError, match="not an image reference"):
        dispatcher("--image", "Bad/Ref:v1")
    # a pull secret lives in the pods' namespace: a run's own namespace has none
    with pytest.raises(UsageError, match="--image-pull-secret needs --namespace"):
        dispatcher("--image", f"r/t@{SHA}", "--image-pull-secret", "regcred")
    options = dispatcher("--image", f"r/t@{SHA}", "--image-pull-secret", "regcred", "--namespace", "talbench").options
    assert options.image_pull_secrets == ("regcred",) and options.namespace == "talbench"
