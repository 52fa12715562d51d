"""Just enough telnet for a serial console: strip the option negotiation and
commands a telnet client sends, so only what the user typed reaches the guest.
Raw TCP clients (nc) send none of it and pass through untouched. Pure."""

from __future__ import annotations

IAC, SB, SE = 255, 250, 240
WILL, WONT, DO, DONT = 251, 252, 253, 254


class TelnetFilter:
    def __init__(self) -> None:
        self.state = "data"  # data, iac, option, sub, sub-iac

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if self.state == "data":
                if byte == IAC:
                    self.state = "iac"
                else:
                    out.append(byte)
            elif self.state == "iac":
                if byte == IAC:  # an escaped 255 is a real 255
                    out.append(IAC)
                    self.state = "data"
                elif byte in (WILL, WONT, DO, DONT):
                    self.state = "option"
                elif byte == SB:
                    self.state = "sub"
                else:  # a two-byte command (NOP, BRK, AYT, ...)
                    self.state = "data"
            elif self.state == "option":
                self.state = "data"
            elif self.state == "sub":
                if byte == IAC:
                    self.state = "sub-iac"
            elif self.state == "sub-iac":
                self.state = "data" if byte == SE else "sub"
        return bytes(out)
