#!/bin/sh
# A weft node under containerlab: waits for its links (containerlab adds them after start),
# loads /etc/weft/cluster.yaml into the node's store, makes WEFT_PODS pods through weft-cni
# (namespaces inside the container, as a runtime would), starts weft-felix and runs weft-bgpd in
# the foreground: standalone with /etc/weft/bgpd.yaml bound, else in cluster mode on the store
# (its configuration from the WeftNode, BGPConfiguration and BGPPeer objects there).
# Under containerlab each node has its own store: pools must not overlap between nodes
# (one /26 per node, as in ../leaf-spine/cluster.yaml). weft-lab shares one store per lab.
set -eu
store=${WEFT_STORE:-file:/var/lib/weft/store}
node=${WEFT_NODENAME:-$(hostname)}
pods=${WEFT_PODS:-0}
sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
i=0; while [ $i -lt 60 ] && ! ip link show eth1 >/dev/null 2>&1; do i=$((i+1)); sleep 1; done
[ -f /etc/weft/cluster.yaml ] && weftctl --store "$store" apply -f /etc/weft/cluster.yaml
n=1
while [ "$n" -le "$pods" ]; do
  ip netns add "pod$n" 2>/dev/null || true
  ip -n "pod$n" link set lo up
  printf '{"cniVersion":"1.1.0","name":"weftnet","type":"weft-cni","store":"%s","nodename":"%s","ipam":{"type":"weft-ipam","assign_ipv6":%s}}' "$store" "$node" "${WEFT_IPV6:-false}" |
    CNI_COMMAND=ADD CNI_CONTAINERID="$node-pod$n" CNI_NETNS="/run/netns/pod$n" CNI_IFNAME=eth0 CNI_PATH=/usr/local/bin \
    CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=$node-pod$n" weft-cni >/dev/null
  n=$((n+1))
done
weft-felix --store "$store" --nodename "$node" &
if [ -f /etc/weft/bgpd.yaml ]; then
  exec weft-bgpd --config /etc/weft/bgpd.yaml
fi
exec weft-bgpd --store "$store" --nodename "$node"
