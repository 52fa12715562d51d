"""User management over IPMI (section 22.26-22.30): Get/Set User Access, Get/Set
User Name, Set User Password. Every change is persisted by the owner's callback."""

from __future__ import annotations

from typing import Awaitable, Callable

from services.ipmi.commands import CC_INVALID_FIELD, CC_OK, CC_REQUEST_LENGTH, CommandCore, NETFN_APP
from services.ipmi.session import PRIV_ADMIN, PRIV_CALLBACK, PRIV_OEM, PRIV_OPERATOR
from services.ipmi.users import MAX_USERS, PRIV_NO_ACCESS, UserStore

LAN_CHANNEL = 1
CC_PASSWORD_TEST_FAILED = 0x80
CC_PASSWORD_WRONG_SIZE = 0x81


class UserCommands:
    def __init__(self, core: CommandCore, users: UserStore, save: Callable[[], Awaitable[None]]):
        self.users = users
        self.save = save
        t = core.table
        t[(NETFN_APP, 0x43)] = (PRIV_ADMIN, self.set_user_access)
        t[(NETFN_APP, 0x44)] = (PRIV_OPERATOR, self.get_user_access)
        t[(NETFN_APP, 0x45)] = (PRIV_ADMIN, self.set_user_name)
        t[(NETFN_APP, 0x46)] = (PRIV_OPERATOR, self.get_user_name)
        t[(NETFN_APP, 0x47)] = (PRIV_ADMIN, self.set_user_password)

    @staticmethod
    def _slot(byte: int) -> int | None:
        slot = byte & 0x3F
        return slot if 1 <= slot <= MAX_USERS else None

    @staticmethod
    def _channel_ok(byte: int) -> bool:
        return byte & 0x0F in (LAN_CHANNEL, 0x0E)

    def get_user_access(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 2:
            return CC_REQUEST_LENGTH, b""
        slot = self._slot(data[1])
        if not self._channel_ok(data[0]) or slot is None:
            return CC_INVALID_FIELD, b""
        user = self.users.get(slot)
        status = 0x40 if user.enabled else 0x80  # 01b enabled, 10b disabled (via Set User Password)
        access = ((0x40 if user.callback_only else 0) | (0x20 if user.link_auth else 0)
                  | (0x10 if user.ipmi_messaging else 0) | (user.privilege & 0x0F))
        return CC_OK, bytes((MAX_USERS, status | self.users.enabled_count(), 0x01, access))

    async def set_user_access(self, data: bytes) -> tuple[int, bytes]:
        if len(data) not in (3, 4):
            return CC_REQUEST_LENGTH, b""
        slot = self._slot(data[1])
        privilege = data[2] & 0x0F
        if not self._channel_ok(data[0]) or slot is None or slot == 1 \
                or not (PRIV_CALLBACK <= privilege <= PRIV_OEM or privilege == PRIV_NO_ACCESS):
            return CC_INVALID_FIELD, b""
        user = self.users.get(slot)
        if data[0] & 0x80:  # the change bits are valid
            user.callback_only = bool(data[0] & 0x40)
            user.link_auth = bool(data[0] & 0x20)
            user.ipmi_messaging = bool(data[0] & 0x10)
        user.privilege = privilege
        await self.save()
        return CC_OK, b""

    def get_user_name(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_REQUEST_LENGTH, b""
        slot = self._slot(data[0])
        if slot is None:
            return CC_INVALID_FIELD, b""
        return CC_OK, self.users.get(slot).name.ljust(16, b"\x00")

    async def set_user_name(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 17:
            return CC_REQUEST_LENGTH, b""
        slot = self._slot(data[0])
        name = data[1:].split(b"\x00", 1)[0]
        if slot is None or slot == 1 or self.users.name_taken(name, slot):
            return CC_INVALID_FIELD, b""  # slot 1 is the fixed null user; names are unique
        self.users.get(slot).name = name
        await self.save()
        return CC_OK, b""

    async def set_user_password(self, data: bytes) -> tuple[int, bytes]:
        if len(data) < 2:
            return CC_REQUEST_LENGTH, b""
        slot = self._slot(data[0])
        if slot is None or slot == 1:
            return CC_INVALID_FIELD, b""
        operation = data[1] & 0x03
        user = self.users.get(slot)
        if operation in (0, 1):  # disable / enable
            if len(data) not in (2, 18, 22):
                return CC_REQUEST_LENGTH, b""
            user.enabled = operation == 1
            await self.save()
            return CC_OK, b""
        size = 20 if data[0] & 0x80 else 16
        if len(data) != 2 + size:
            return CC_PASSWORD_WRONG_SIZE if len(data) in (18, 22) else CC_REQUEST_LENGTH, b""
        password = data[2:].rstrip(b"\x00")
        if operation == 2:
            user.password = password
            await self.save()
            return CC_OK, b""
        if user.password != password:  # operation 3: test password
            return CC_PASSWORD_TEST_FAILED, b""
        return CC_OK, b""
