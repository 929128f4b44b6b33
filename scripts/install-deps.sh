#!/usr/bin/env bash
# Installs what weft's tests and demo need on a fresh Debian 12 machine, skipping what is there.
# Real components only: etcd, iproute2, nftables, BIRD, the reference CNI plugins, podman (and,
# FRR, GoBGP, containerd). Needs root (apt-get).
set -euo pipefail

packages=(
  etcd-server etcd-client      # the etcd store backend, tested against the real daemon
  protobuf-compiler            # etcd-client's build compiles etcd's .proto files
  iproute2                     # network namespaces, veth, addresses, routes (the netns test kit)
  nftables                     # felix's packet filter
  procps                       # ps/pgrep for process checks
  containernetworking-plugins  # the reference CNI plugins (ptp, bridge, host-local, portmap)
  podman runc busybox-static   # a real container runtime calling weft-cni (its own config dirs)
  bird2                        # BIRD 2, the top-of-rack router of weft-bgpd's interop tests
  frr gobgpd                   # FRR and GoBGP, the other two interop peers of weft-bgpd
  containerd                   # a second real runtime calling weft-cni (`ctr run --cni`)
  iperf3                       # throughput through nodes (graceful restart, policy data path)
  python3-minimal              # small UDP probes in pod namespaces (the lab tests, the demo)
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing packages needs root (apt-get); run as root or install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "error: cargo (Rust 1.95) is required" >&2; exit 1; }
# etcd-server's package starts no daemon without systemd; tests start their own on free ports.
echo "dependencies present"
