"""KubeSpan detection from a sysfs tree (a directory passed in, laid out like /sys)."""

from __future__ import annotations

from pathlib import Path

from talbench.agents.probes.wireguard import kubespan


def _link(root: Path, flags: str, operstate: str = "unknown", mtu: str = "1420") -> Path:
    link = root / "class" / "net" / "kubespan"
    link.mkdir(parents=True)
    (link / "flags").write_text(flags + "\n")
    (link / "operstate").write_text(operstate + "\n")
    (link / "mtu").write_text(mtu + "\n")
    return link


def test_no_kubespan_link_is_inactive(tmp_path: Path) -> None:
    (tmp_path / "class" / "net" / "eth0").mkdir(parents=True)
    state = kubespan.detect(tmp_path)
    assert not state.present and not state.active


def test_kubespan_link_up_is_active(tmp_path: Path) -> None:
    _link(tmp_path, "0x1091")  # IFF_UP | IFF_RUNNING | IFF_NOARP, as a WireGuard link shows
    state = kubespan.detect(tmp_path)
    assert state.active and state.mtu == 1420 and state.operstate == "unknown"
    assert state.as_dict()["active"] is True


def test_kubespan_link_down_is_present_but_inactive(tmp_path: Path) -> None:
    _link(tmp_path, "0x1090", operstate="down")
    state = kubespan.detect(tmp_path)
    assert state.present and not state.active


def test_the_real_sysfs_of_this_machine_has_no_kubespan() -> None:
    # This machine is not a Talos node: no kubespan link (lab namespaces have none either).
    assert not kubespan.detect().active


def test_path_names_come_from_the_route_device() -> None:
    assert kubespan.path_of("kubespan") == "kubespan"
    assert kubespan.path_of("eth0") == "plain"
    assert kubespan.BYPASS_MARK == 0x20 and kubespan.WIREGUARD_PORT == 51820
