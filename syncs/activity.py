"""The activity log: every operator action on a sync, recorded with who did it."""

from __future__ import annotations

from syncs.models import Account, Activity, Connection, Property


def activity_record(
    *, user, action: str, connection: Connection | None = None, property: Property | None = None, params: dict | None = None
) -> Activity:
    """Record ``user`` doing ``action`` (an Activity.Action) on a connection or a property."""
    if connection is not None:
        property = connection.property
    account = property.account if property is not None else Account.of_user(user)
    return Activity.objects.create(
        account=account, user=user if user and user.is_authenticated else None,
        property=property, connection=connection, action=action, params=params or {},
    )
