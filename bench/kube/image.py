"""The agent image a kube run deploys (``--image``) and the pull secrets it uses: checked before
anything touches the cluster.

There is no default image: talbench publishes none in a registry namespace it owns yet, and an
image from a namespace it does not own would get root, NET_ADMIN and host networking on every node.
Until a release publishes one, the user builds the image (``make image``), pushes it to a registry
the nodes can pull from, and names it, best by digest.

References follow the grammar of github.com/distribution/reference (what containerd and the
kubelet parse): ``[HOST[:PORT]/]PATH[:TAG][@DIGEST]``, the path lowercase, the digest sha256 or
sha512 in lowercase hex.  An image with neither tag nor digest means ``:latest``, which moves: it
is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from talbench.bench.errors import UsageError

REPOSITORY = "talbench"  # the image's name in the user's registry (and in ghcr.io/OWNER/ by the release workflow)
MAX_NAME = 255  # distribution/reference: NameTotalLengthMax

# distribution/reference's grammar, component by component (reference/regexp.go)
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}"
REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
# a Secret's name: a DNS-1123 subdomain
SECRET_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*", re.ASCII)


def build_hint(version: str) -> str:
    """How to get an image to pass as --image (one line)."""
    return (
        f"build it with 'make image', push it with 'skopeo copy --digestfile digest "
        f"oci-archive:results/image/talbench-{version}-<arch>.oci.tar docker://REGISTRY/{REPOSITORY}:v{version}', "
        f"then pass --image REGISTRY/{REPOSITORY}@$(cat digest)  (a private registry: --image-pull-secret NAME)"
    )


@dataclass(frozen=True)
class ImageRef:
    """A checked image reference."""

    name: str  # [host[:port]/]path
    tag: str | None
    digest: str | None  # sha256:<64 hex> or sha512:<128 hex>

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def pull_policy(self) -> str:
        # A digest names immutable content: a copy the node already has is that image, so
        # IfNotPresent saves the registry round trip and works when the registry is briefly away.
        # A tag can be moved (re-pushed): IfNotPresent would let each node keep whatever it pulled
        # first, and one run could measure with agents of different builds; Always makes every
        # node resolve the tag again (a manifest request; the layers it has stay cached).
        return "IfNotPresent" if self.digest else "Always"


def parse_image(text: str, option: str = "--image") -> ImageRef:
    """``text`` as an image reference; UsageError (one line) when it is not one, or names
    neither a tag nor a digest."""
    shown = text if len(text) <= 300 and text.isprintable() else repr(text[:300])
    found = REFERENCE.fullmatch(text)
    if found is None:
        raise UsageError(
            f"{option} {shown}: not an image reference (expected [REGISTRY/]PATH:TAG or [REGISTRY/]PATH@sha256:DIGEST, "
            "the path in lowercase)"
        )
    name, tag, digest = found.group("name"), found.group("tag"), found.group("digest")
    if len(name) > MAX_NAME:
        raise UsageError(f"{option}: the image name is longer than {MAX_NAME} characters")
    if tag is None and digest is None:
        raise UsageError(
            f"{option} {shown}: name a tag ({name}:TAG) or, better, a digest ({name}@sha256:...); "
            "without either it means :latest, which moves"
        )
    return ImageRef(name, tag, digest)


def require_image(text: str | None, version: str) -> ImageRef:
    """The image a kube run deploys: given, and well-formed (UsageError with how to build one)."""
    if not text:
        raise UsageError(
            "--image is required: talbench publishes no agent image yet, and runs none it did not build",
            hint=build_hint(version),
        )
    return parse_image(text)


def parse_pull_secrets(values: str | Iterable[str] | None, option: str = "--image-pull-secret") -> tuple[str, ...]:
    """``--image-pull-secret NAME[,NAME]`` (repeatable) -> names, in order, once each."""
    if not values:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    names: list[str] = []
    for item in items:
        for part in str(item).split(","):
            name = part.strip()
            if not name:
                continue
            if len(name) > 253 or not SECRET_NAME.fullmatch(name):
                raise UsageError(f"{option} {name!r}: not a Secret name (lowercase letters, digits, '-' and '.')")
            if name not in names:
                names.append(name)
    return tuple(names)
