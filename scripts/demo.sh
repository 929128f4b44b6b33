#!/usr/bin/env bash
# The README demo. Today: a weft datastore (the embedded file store) holding a small cluster's
# resources, read back with weftctl. The leaf-spine lab with real ToR routers and pods pinging
# across nodes replaces this as the lab issue lands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== building weft (release)"
cargo build --release --quiet -p weftctl
weftctl=target/release/weftctl
store_dir=${WEFT_DEMO_DIR:-/tmp/weft-demo}/store
store="file:$store_dir"

echo "== loading examples/cluster.yaml into $store"
"$weftctl" --store "$store" apply -f examples/cluster.yaml
echo
echo "== weftctl status"
"$weftctl" --store "$store" status
echo
echo "== weftctl get ippools"
"$weftctl" --store "$store" get ippools
echo
echo "== weftctl crds (what a Kubernetes cluster would install)"
"$weftctl" crds | grep -E '^  name: ' | sed 's/^  name: /  /'
echo
echo "Not built yet: the BGP speaker, IPAM, CNI, policy and the leaf-spine lab (see the README's"
echo "feature table). To remove the demo's store: rm -rf ${store_dir%/store}"
