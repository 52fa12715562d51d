"""Logging set-up shared by every program: one line per record, prefixed with
the program name, on stdout, so `docker logs` tells the whole story."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(program: str) -> logging.Logger:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"{program}: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO")
    # qemu.qmp logs every message at DEBUG and reconnect chatter at INFO/WARNING
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    return logging.getLogger(program)


def exec_with_prefix(program: str, argv: list[str]) -> None:
    """Replace this process with `argv`, its output prefixed with `program: `.

    A forked helper reads the program's stdout/stderr through a pipe and
    prefixes each line; the program itself keeps this PID, so supervisord's
    signals reach it directly. The helper ends when the program's output closes.
    """
    read_fd, write_fd = os.pipe()
    if os.fork() == 0:  # the prefixer
        os.close(write_fd)
        os.setsid()  # stay out of the program's signals; we end on EOF
        prefix = f"{program}: ".encode()
        out = sys.stdout.buffer
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    out.write(prefix + line + b"\n")
                out.flush()
            if pending:
                out.write(prefix + pending + b"\n")
                out.flush()
        os._exit(0)
    os.close(read_fd)
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    os.execvp(argv[0], argv)


def prefix_main() -> None:
    """`qemu-bmc-prefix NAME -- COMMAND...`: run a non-Python program under supervisord."""
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: qemu-bmc-prefix NAME -- COMMAND [ARG...]")
    exec_with_prefix(args[0], args[2:])
