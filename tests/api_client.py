"""What the API tests share: members of two accounts with tokens, and a client that sends one."""

from __future__ import annotations

import json
from types import SimpleNamespace

from django.test import Client

from syncs.api.tokens import api_token_create
from syncs.conflicts import conflict_fingerprint, conflict_key, property_conflicts
from syncs.export_tokens import export_token_ensure
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    SyncRunFactory,
)


class ApiClient:
    """Django's test client with ``Authorization: Bearer <token>`` on every request, JSON in and out."""

    def __init__(self, secret: str | None, **headers):
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
        self.headers.update(headers)

    def request(self, method: str, path: str, data=None, **headers):
        kwargs = {**self.headers, **headers}
        if data is not None:
            kwargs.update(data=data if isinstance(data, str | bytes) else json.dumps(data), content_type="application/json")
        return getattr(self.client, method.lower())(path, **kwargs)

    def get(self, path, **headers):
        return self.request("GET", path, **headers)

    def post(self, path, data=None, **headers):
        return self.request("POST", path, {} if data is None else data, **headers)

    def patch(self, path, data=None, **headers):
        return self.request("PATCH", path, {} if data is None else data, **headers)

    def delete(self, path, **headers):
        return self.request("DELETE", path, **headers)


def token_of(membership, name: str = "script") -> str:
    return api_token_create(membership=membership, name=name).secret


def account_with_members(property_name: str = "Casa Azul") -> SimpleNamespace:
    """An account with an owner, a manager and a viewer (a token each), a property with a sync
    that has run once, and a stay made here that the sync's portal also has booked: a double
    booking."""
    owner = MembershipFactory(role="owner")
    account = owner.account
    manager = MembershipFactory(account=account, role="manager")
    viewer = MembershipFactory(account=account, role="viewer")
    connection = ConnectionFactory(property=PropertyFactory(account=account, name=property_name))
    export_token_ensure(property=connection.property, connection=connection)
    run = SyncRunFactory(connection=connection)
    block = BlockFactory(property=connection.property, source=None, kind="reserved", summary="Direct booking")
    BlockFactory(property=connection.property, source=connection, kind="reserved", start_date=block.start_date,
                 end_date=block.end_date)
    (conflict,) = property_conflicts(property_ids=[connection.property_id])
    return SimpleNamespace(
        account=account, owner=owner, manager=manager, viewer=viewer, property=connection.property,
        connection=connection, run=run, block=block, key=conflict_key(conflict), fingerprint=conflict_fingerprint(conflict),
        tokens={role: token_of(m, f"{role} script") for role, m in (("owner", owner), ("manager", manager), ("viewer", viewer))},
    )
