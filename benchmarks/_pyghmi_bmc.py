"""pyghmi's BMC server (pyghmi.ipmi.bmc.Bmc) as a stand-alone process: the third IPMI peer.

`python -m benchmarks._pyghmi_bmc --port P --user U --password W` answers RMCP+
(pyghmi offers cipher suite 3 only) on 127.0.0.1:P with one administrator account,
and keeps a power state so Get Chassis Status and Chassis Control have something
to report. Prints nothing: readiness is its first RMCP+ answer, as for the others.
"""

from __future__ import annotations

import argparse

import pyghmi.ipmi.bmc as bmc


class BenchBmc(bmc.Bmc):
    """The smallest useful BMC: a power bit, changed by Chassis Control."""

    def __init__(self, authdata, port, address):
        super().__init__(authdata, port=port, address=address)
        self.powered = False

    def get_power_state(self):
        return "on" if self.powered else "off"

    def power_on(self):
        self.powered = True

    def power_off(self):
        self.powered = False

    def power_cycle(self):
        self.powered = True

    def power_reset(self):
        pass

    def power_shutdown(self):
        self.powered = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    server = BenchBmc({args.user: args.password}, args.port, args.address)
    server.listen()


if __name__ == "__main__":
    main()
