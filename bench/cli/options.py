"""The dispatchers' options, built from the parsed command line: the only place that reads the
argparse namespace for them (the dispatchers take frozen options, never the namespace).  Part of
the CLI (main() in bench/cli/__init__.py maps what it raises to exit codes)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence

from talbench.bench.dispatch.kube import KubeOptions
from talbench.bench.errors import UsageError
from talbench.bench.kube.image import parse_pull_secrets


def kube_options(args: argparse.Namespace) -> KubeOptions:
    """The Kubernetes dispatcher's options from `talbench run` or `talbench clean`: both take
    --kubeconfig, --context, --namespace and --delete-timeout; only `run` deploys, so only its
    --image, --image-pull-secret and --node-selector are read (clean finds every run's objects)."""
    options = KubeOptions(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        delete_timeout=delete_timeout(args.delete_timeout),
    )
    if args.command != "run":
        return options
    return dataclasses.replace(
        options,
        image=args.image or None,
        image_pull_secrets=parse_pull_secrets(args.image_pull_secret),
        node_selector=parse_node_selector(args.node_selector),
    )


def parse_node_selector(values: Sequence[str] | None) -> dict[str, str]:
    """``--node-selector key=value[,key=value]`` (repeatable) -> dict; UsageError otherwise."""
    selector: dict[str, str] = {}
    for item in values or ():
        for part in item.split(","):
            key, sep, value = part.strip().partition("=")
            if not part.strip():
                continue
            if not sep or not key:
                raise UsageError(f"--node-selector {part.strip()!r}: expected KEY=VALUE")
            selector[key.strip()] = value.strip()
    return selector


def delete_timeout(value: float | None) -> float:
    """``--delete-timeout SECONDS`` (absent: the default)."""
    if value is None:
        return KubeOptions.delete_timeout
    if not 0 < value < math.inf:
        raise UsageError(f"--delete-timeout {value}: expected a number of seconds above 0")
    return value
