"""RMCP+ cipher suites and the RAKP key exchange arithmetic.

IPMI v2.0 section 13.28 (RAKP), 13.31 (SIK, K1, K2), 13.28.4/13.29 (integrity and
AES-CBC-128 confidentiality), table 22-20 (cipher suite IDs).
"""

from __future__ import annotations

import functools
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AUTH_RAKP_NONE, AUTH_RAKP_HMAC_SHA1, AUTH_RAKP_HMAC_MD5, AUTH_RAKP_HMAC_SHA256 = 0, 1, 2, 3
INTEGRITY_NONE, INTEGRITY_HMAC_SHA1_96, INTEGRITY_HMAC_SHA256_128 = 0, 1, 4
CONF_NONE, CONF_AES_CBC_128 = 0, 1


@dataclass(frozen=True)
class CipherSuite:
    id: int
    auth: int
    integrity: int
    confidentiality: int
    digest: str  # hashlib name used by RAKP (and by integrity, when there is one)
    icv_len: int  # RAKP4 integrity check value length (truncated HMAC)
    auth_code_len: int  # per-packet auth code length, 0 without integrity

    def record(self) -> bytes:
        """The Get Channel Cipher Suites record (table 22-19)."""
        return bytes((0xC0, self.id, self.auth, 0x40 | self.integrity, 0x80 | self.confidentiality))


SUITES: dict[int, CipherSuite] = {
    # suite 0 authenticates nobody: offered only when IPMI_CIPHER_SUITES names it
    0: CipherSuite(0, AUTH_RAKP_NONE, INTEGRITY_NONE, CONF_NONE, "", 0, 0),
    1: CipherSuite(1, AUTH_RAKP_HMAC_SHA1, INTEGRITY_NONE, CONF_NONE, "sha1", 12, 0),
    2: CipherSuite(2, AUTH_RAKP_HMAC_SHA1, INTEGRITY_HMAC_SHA1_96, CONF_NONE, "sha1", 12, 12),
    3: CipherSuite(3, AUTH_RAKP_HMAC_SHA1, INTEGRITY_HMAC_SHA1_96, CONF_AES_CBC_128, "sha1", 12, 12),
    17: CipherSuite(17, AUTH_RAKP_HMAC_SHA256, INTEGRITY_HMAC_SHA256_128, CONF_AES_CBC_128,
                    "sha256", 16, 16),
}


def suite_for(auth: int, integrity: int, confidentiality: int, allowed: tuple[int, ...]) -> CipherSuite | None:
    for suite_id in allowed:
        s = SUITES[suite_id]
        if (s.auth, s.integrity, s.confidentiality) == (auth, integrity, confidentiality):
            return s
    return None


def hmac_digest(digest: str, key: bytes, data: bytes) -> bytes:
    """HMAC with `digest`; RAKP-none (cipher suite 0) has no digest and no codes."""
    if not digest:
        return b""
    return hmac.digest(key, data, digest)  # the one-shot C path: no HMAC object per packet


def user_key(password: bytes) -> bytes:
    """K_uid: the password, zero-padded to 20 bytes (IPMI 2.0 passwords are at most 20)."""
    return password.ljust(20, b"\x00")


@dataclass(frozen=True)
class SessionKeys:
    sik: bytes
    k1: bytes
    k2: bytes

    @property
    def aes_key(self) -> bytes:
        return self.k2[:16]


def derive_keys(digest: str, kg: bytes, rm: bytes, rc: bytes, role: int, username: bytes) -> SessionKeys:
    if not digest:
        return SessionKeys(b"", b"", b"")
    sik = hmac_digest(digest, kg, rm + rc + bytes((role, len(username))) + username)
    # the constants are 20 bytes for every hash (ipmitool, FreeIPMI and the spec agree)
    k1 = hmac_digest(digest, sik, b"\x01" * 20)
    k2 = hmac_digest(digest, sik, b"\x02" * 20)
    return SessionKeys(sik, k1, k2)


@functools.lru_cache(maxsize=1024)
def _aes_blocks(key: bytes):
    """Per-key block ciphers, made once per session key instead of once per packet.
    ECB on single blocks plus our own chaining is CBC, without a context per IV."""
    aes = algorithms.AES(key)
    return Cipher(aes, modes.ECB()).encryptor(), Cipher(aes, modes.ECB()).decryptor()


def aes_encrypt(key: bytes, data: bytes) -> bytes:
    """IV ‖ AES-CBC(data ‖ 01 02 … n ‖ n), the RMCP+ confidentiality trailer (13.29)."""
    pad_len = (16 - (len(data) + 1) % 16) % 16
    plain = data + bytes(range(1, pad_len + 1)) + bytes((pad_len,))
    iv = os.urandom(16)
    encrypt_block = _aes_blocks(key)[0].update
    out = [iv]
    previous = int.from_bytes(iv, "big")
    for i in range(0, len(plain), 16):
        block = encrypt_block((int.from_bytes(plain[i:i + 16], "big") ^ previous).to_bytes(16, "big"))
        previous = int.from_bytes(block, "big")
        out.append(block)
    return b"".join(out)


class DecryptError(ValueError):
    pass


def aes_decrypt(key: bytes, payload: bytes) -> bytes:
    if len(payload) < 32 or len(payload) % 16:
        raise DecryptError("encrypted payload is not IV plus whole blocks")
    decrypt_block = _aes_blocks(key)[1].update
    out = []
    previous = int.from_bytes(payload[:16], "big")
    for i in range(16, len(payload), 16):
        block = payload[i:i + 16]
        out.append((int.from_bytes(decrypt_block(block), "big") ^ previous).to_bytes(16, "big"))
        previous = int.from_bytes(block, "big")
    plain = b"".join(out)
    pad_len = plain[-1]
    if pad_len > 15 or plain[-1 - pad_len:-1] != bytes(range(1, pad_len + 1)):
        raise DecryptError("bad confidentiality pad")
    return plain[:-1 - pad_len]
