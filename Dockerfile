# qemu-bmc: a QEMU VM behind an emulated BMC. Three stages keep the image small:
# the guest kernel/initramfs and the Python venv are built apart and copied in.
#
# BASE_IMAGE must be Debian bookworm. Where no registry is reachable, make one:
#   debootstrap --variant=minbase bookworm DIR && tar -C DIR -c . | docker import - NAME
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS guest
COPY scripts/build-guest.sh scripts/fetch-novnc.sh /usr/local/bin/
# the guest, and noVNC's browser code for the web console (files only: not the
# novnc package with its nodejs and numpy)
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      linux-image-amd64 busybox-static kmod cpio gzip ipmitool \
 && /usr/local/bin/fetch-novnc.sh /novnc \
 && rm -rf /var/lib/apt/lists/*
RUN /usr/local/bin/build-guest.sh /guest

FROM ${BASE_IMAGE} AS venv
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# build/extra-ca-certificates.crt (optional, not in git): a CA bundle for pip when
# PyPI is reached through a TLS-intercepting proxy. The test script provides it.
COPY pyproject.toml build/extra-ca-certificate[s].crt /src/
COPY bus /src/bus
COPY services /src/services
COPY qemu_bmc /src/qemu_bmc
RUN python3 -m venv /opt/qemu-bmc/venv \
 && if [ -f /src/extra-ca-certificates.crt ]; then export PIP_CERT=/src/extra-ca-certificates.crt; fi \
 && /opt/qemu-bmc/venv/bin/pip install --no-cache-dir --disable-pip-version-check /src
# pip leaves compiled bytecode next to every module: ~20 MB that saves each
# service compiling its imports at every container start (about 1 s of start-up)

FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 qemu-system-x86 ovmf nats-server ipmitool iproute2 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /usr/share/locale/*
COPY --from=guest /guest /usr/share/qemu-bmc/guest
COPY --from=guest /novnc /usr/share/novnc
COPY --from=venv /opt/qemu-bmc/venv /opt/qemu-bmc/venv
COPY configs /etc/qemu-bmc
COPY configs/supervisord.conf /etc/supervisor/supervisord.conf
COPY scripts/entrypoint.sh /usr/local/bin/qemu-bmc-entrypoint
ENV PATH=/opt/qemu-bmc/venv/bin:$PATH \
    STATE_DIR=/var/lib/qemu-bmc \
    RUN_DIR=/run/qemu-bmc \
    LOG_DIR=/var/log/qemu-bmc \
    QEMU_BMC_CONFIG_DIR=/etc/qemu-bmc \
    GUEST_DIR=/usr/share/qemu-bmc/guest \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/qemu-bmc
# 623/udp IPMI, 443/tcp Redfish (HTTPS), 5900/tcp VNC, 5000/tcp serial console (the embedded NATS stays on loopback)
EXPOSE 623/udp 443/tcp 5900/tcp 5000/tcp
STOPSIGNAL SIGTERM
# healthy: every program up (the VM may be off) and the BMC answering IPMI locally
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["qemu-bmc", "--timeout", "3", "health"]
ENTRYPOINT ["/usr/local/bin/qemu-bmc-entrypoint"]
