#!/usr/bin/env bash
# The README demo: the leaf-spine lab of containerlab/leaf-spine/ on this machine's network
# namespaces. Two spines and two leaves run real FRR and BIRD, four weft nodes run weft-bgpd
# and get two pods each through weft-cni; then it shows a node's BGP sessions, the routes a
# top-of-rack router learned, and pods pinging each other across the fabric.
# Needs root (namespaces, apt-get). Only 198.18.0.0/15 is used, inside the lab's namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== building weft (release)"
cargo build --release --quiet -p weft-bgpd -p weft-felix -p weft-cni -p weftctl -p weft-topology-tests --bins
lab="target/release/weft-lab"
topology="containerlab/leaf-spine/leaf-spine.clab.yml"

echo "== weft-lab up $topology"
"$lab" up "$topology"

echo
echo "== waiting for the fabric to converge (every node learns the three other nodes' blocks)"
converged=0
for _ in $(seq 1 60); do
  learned=0
  for node in node1 node2 node3 node4; do
    learned=$((learned + $(ip -n "clab-weft-ls-$node" -4 route show proto 87 | grep -c '/26 via' || true)))
  done
  if [ "$learned" -ge 12 ]; then converged=1; break; fi
  sleep 1
done
[ "$converged" = 1 ] || { echo "the fabric did not converge in 60 s; see /run/weft-lab/weft-ls/*/" >&2; exit 1; }

echo
echo "== node1: weftctl bgp peers"
"$lab" exec "$topology" node1 weftctl bgp peers
echo
echo "== node1: weftctl bgp routes"
"$lab" exec "$topology" node1 weftctl bgp routes
echo
echo "== leaf1 (FRR): show ip route bgp"
"$lab" exec "$topology" leaf1 vtysh -c "show ip route bgp"
echo
echo "== leaf2 (BIRD): show route"
"$lab" exec "$topology" leaf2 birdc show route

address() { python3 -c "import json,sys; s=json.load(open('/run/weft-lab/weft-ls/state.json')); print([p['addresses'][0].split('/')[0] for p in s['pods'] if p['name']==sys.argv[1]][0])" "$1"; }
echo
for pair in "node1-pod1 node3-pod2" "node2-pod2 node4-pod1" "node4-pod2 node1-pod2"; do
  set -- $pair
  to=$(address "$2")
  echo "== pod $1 -> pod $2 ($to), across the fabric"
  ip netns exec "clab-weft-ls-$1" ping -c 3 -i 0.2 -W 1 "$to"
  echo
done

cat <<EOF
The lab is up. Look around:
  $lab status $topology
  $lab exec $topology leaf1 vtysh -c 'show ip bgp'
  $lab exec $topology node3 weftctl bgp peers
  ip netns exec clab-weft-ls-node1-pod1 ping $(address node4-pod2)
Tear it down:
  $lab down $topology
EOF
