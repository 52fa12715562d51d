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
: "${NATS_URL:=nats://$NATS_LISTEN}"
: "${NATS_SERVER_NAME:=qemu-bmc-$(printf %s "$NODE_NAME" | tr -c 'A-Za-z0-9_-' '-')}"
: "${NATS_STORE_DIR:=$STATE_DIR/nats}"
export STATE_DIR RUN_DIR LOG_DIR QEMU_BMC_CONFIG_DIR NODE_NAME NATS_LISTEN NATS_URL NATS_SERVER_NAME NATS_STORE_DIR

# RUN_DIR holds this container start's sockets and markers: start it empty.
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR" "$STATE_DIR" "$LOG_DIR" "$NATS_STORE_DIR"
chmod 0700 "$RUN_DIR"

qemu-bmc check-config || exit 2

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
exec supervisord -n -c "$QEMU_BMC_CONFIG_DIR/supervisord.conf"
