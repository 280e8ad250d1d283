"""What tests on the real Kubernetes lab create beside talbench's own objects (namespaces,
applied manifests, ServiceAccount identities bound to given roles), removed by ``remove``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.bench.kube.real_cluster import RealCluster


class Objects:
    """What the tests create beside talbench's own: removed at the end of the module."""

    def __init__(self, cluster: RealCluster, home: str) -> None:
        self.cluster = cluster
        self.home = home  # the namespace of the test identities' ServiceAccounts
        self.made: list[tuple[str, ...]] = []

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = self.cluster.kubectl(*args, stdin=stdin)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        self.kubectl("create", "namespace", name)
        self.made.append(("namespace", name))
        if labels:
            self.kubectl("label", "namespace", name, "--overwrite", *(f"{k}={v}" for k, v in labels.items()))
        return name

    def apply(self, text: str) -> list[dict[str, Any]]:
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
        self.kubectl("apply", "-f", "-", stdin=text)
        for doc in docs:
            namespace = doc["metadata"].get("namespace")
            self.made.append((doc["kind"].lower(), doc["metadata"]["name"], *(["-n", namespace] if namespace else [])))
        return docs

    def identity(self, name: str, roles: list[dict[str, Any]], tmp: Path) -> Path:
        """A kubeconfig whose user is ServiceAccount ``home/name``, bound to ``roles`` only."""
        self.kubectl("-n", self.home, "create", "serviceaccount", name)
        account = f"{self.home}:{name}"
        for role in roles:
            binding = f"{name}-{role['metadata']['name']}"
            if role["kind"] == "ClusterRole":
                self.kubectl(
                    "create", "clusterrolebinding", binding, "--clusterrole", role["metadata"]["name"],
                    "--serviceaccount", account,
                )  # fmt: skip
                self.made.append(("clusterrolebinding", binding))
            else:
                namespace = role["metadata"]["namespace"]
                self.kubectl(
                    "-n", namespace, "create", "rolebinding", binding, "--role", role["metadata"]["name"],
                    "--serviceaccount", account,
                )  # fmt: skip
                self.made.append(("rolebinding", binding, "-n", namespace))
        token = self.kubectl("-n", self.home, "create", "token", name, "--duration", "1h").strip()
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        config["users"] = [{"name": name, "user": {"token": token}}]
        config["contexts"][0]["context"]["user"] = name
        path = tmp / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def remove(self) -> None:
        for what in reversed(self.made):
            self.cluster.kubectl("delete", "--ignore-not-found", "--wait=false", *what)
