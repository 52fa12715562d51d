#!/bin/sh
# Container entrypoint: settle the environment, check the configuration, then
# hand PID 1 to supervisord.
set -eu

: "${STATE_DIR:=/var/lib/qemu-bmc}"
: "${RUN_DIR:=/run/qemu-bmc}"
: "${LOG_DIR:=/var/log/qemu-bmc}"
: "${QEMU_BMC_CONFIG_DIR:=/etc/qemu-bmc}"
: "${NODE_NAME:=${CLAB_LABEL_CLAB_NODE_NAME:-$(hostname)}}"
: "${NATS_LISTEN:=127.0.0.1:4222}"
: "${NATS_USER:=qemu-bmc}"
: "${NATS_LEAF_USER:=qemu-bmc}"
nats_host=${NATS_LISTEN%:*}
case $nats_host in
  127.0.0.1|localhost|::1|"[::1]") nats_exposed=no ;;
  *) nats_exposed=yes ;;  # check-config insists on NATS_PASSWORD then
esac
if [ "$nats_exposed" = yes ]; then
  : "${NATS_URL:=nats://$NATS_USER:${NATS_PASSWORD:-}@127.0.0.1:${NATS_LISTEN##*:}}"
else
  : "${NATS_URL:=nats://$NATS_LISTEN}"
fi
: "${NATS_CONFIG_FILE:=$RUN_DIR/nats.conf}"
: "${NATS_SERVER_NAME:=qemu-bmc-$(printf %s "$NODE_NAME" | tr -c 'A-Za-z0-9_-' '-')}"
: "${NATS_STORE_DIR:=$STATE_DIR/nats}"
export STATE_DIR RUN_DIR LOG_DIR QEMU_BMC_CONFIG_DIR NODE_NAME NATS_LISTEN NATS_URL NATS_SERVER_NAME NATS_STORE_DIR \
  NATS_CONFIG_FILE

# RUN_DIR holds this container start's sockets and markers: start it empty.
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR" "$STATE_DIR" "$LOG_DIR" "$NATS_STORE_DIR"
chmod 0700 "$RUN_DIR"

qemu-bmc check-config || exit 2

# The embedded NATS: configs/nats.conf, plus credentials when it listens beyond
# loopback and a leaf connection to a lab hub when NATS_LEAF_URL names one.
# Secrets go only into this 0600 file (check-config allowed no quoting-sensitive
# characters); nats-server redacts them from its own log.
render_nats_config() {
  cat "$QEMU_BMC_CONFIG_DIR/nats.conf"
  if [ "$nats_exposed" = yes ]; then
    printf 'authorization {\n  user: "%s"\n  password: "%s"\n}\n' "$NATS_USER" "$NATS_PASSWORD"
  fi
  if [ -n "${NATS_LEAF_URL:-}" ]; then
    scheme=${NATS_LEAF_URL%%://*}
    hostport=${NATS_LEAF_URL#*://}
    # Only the bus subjects cross; the JetStream API and the key-value store
    # (users and their passwords) stay on this node.
    printf 'leafnodes {\n  remotes = [\n    {\n      url: "%s://%s:%s@%s"\n' \
      "$scheme" "$NATS_LEAF_USER" "$NATS_LEAF_PASSWORD" "${hostport%/}"
    printf '      deny_exports: ["$JS.>", "$KV.>", "$SYS.>", "$JSC.>"]\n'
    printf '      deny_imports: ["$JS.>", "$KV.>", "$SYS.>", "$JSC.>"]\n    }\n  ]\n}\n'
  fi
}
(umask 077 && render_nats_config >"$NATS_CONFIG_FILE")

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
exec supervisord -n -c "$QEMU_BMC_CONFIG_DIR/supervisord.conf"
