#!/bin/sh
# weft-install-cni: the DaemonSet's init container. Installs weft-cni and weft-ipam into the
# host's CNI binary directory (atomically: copy, then rename), writes the conflist with this
# node's name, and a kubeconfig built from the pod's service account for the plugin to reach
# the API server. Paths can be overridden for tests; every failure stops with a message.
set -eu
bin_dir=${WEFT_BIN_DIR:-/usr/local/bin}
host_bin=${WEFT_HOST_CNI_BIN:-/host/opt/cni/bin}
host_net=${WEFT_HOST_CNI_NET:-/host/etc/cni/net.d}
config=${WEFT_CNI_CONFIG:-/etc/weft/cni/10-weft.conflist}
sa=${WEFT_SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}
node=${WEFT_NODENAME:?WEFT_NODENAME must be set (the DaemonSet passes spec.nodeName)}
api_host=${KUBERNETES_SERVICE_HOST:?KUBERNETES_SERVICE_HOST is not set: not running in a pod?}
api_port=${KUBERNETES_SERVICE_PORT:-443}

for f in "$sa/token" "$sa/ca.crt" "$config"; do
  [ -r "$f" ] || { echo "weft-install-cni: cannot read $f" >&2; exit 1; }
done
mkdir -p "$host_bin" "$host_net"
for plugin in weft-cni weft-ipam; do
  cp "$bin_dir/$plugin" "$host_bin/.$plugin.new"
  chmod 755 "$host_bin/.$plugin.new"
  mv -f "$host_bin/.$plugin.new" "$host_bin/$plugin"
done

case $api_host in *:*) server="https://[$api_host]:$api_port" ;; *) server="https://$api_host:$api_port" ;; esac
umask 077
cat > "$host_net/.weft-kubeconfig.new" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: $server
      certificate-authority-data: $(base64 -w0 < "$sa/ca.crt")
users:
  - name: weft-cni
    user:
      token: $(cat "$sa/token")
contexts:
  - name: weft-cni
    context: { cluster: local, user: weft-cni }
current-context: weft-cni
KUBECONFIG
mv -f "$host_net/.weft-kubeconfig.new" "$host_net/weft-kubeconfig"

umask 022
sed "s/__NODENAME__/$node/" "$config" > "$host_net/.10-weft.conflist.new"
mv -f "$host_net/.10-weft.conflist.new" "$host_net/10-weft.conflist"
echo "weft-install-cni: installed weft-cni and weft-ipam in $host_bin, 10-weft.conflist for node $node in $host_net"
