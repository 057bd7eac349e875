"""The activity log: every operator action on a sync, recorded with who did it, and what the
system did by itself (automatic pauses and resumes, emails), recorded with no user."""

from __future__ import annotations

from datetime import datetime

from syncs.models import Account, Activity, Connection, Property

# Set on the user object of a request made with an API token (syncs.api.authentication): the
# token's name, recorded with every entry the request writes.
API_TOKEN_NAME = "api_token_name"


def activity_record(
    *, user, action: str, connection: Connection | None = None, property: Property | None = None, params: dict | None = None
) -> Activity:
    """Record ``user`` doing ``action`` (an Activity.Action) on a connection or a property."""
    if connection is not None:
        property = connection.property
    account = property.account if property is not None else Account.of_user(user)
    token_name = getattr(user, API_TOKEN_NAME, "")
    if token_name:
        params = {**(params or {}), "api_token": token_name}
    return Activity.objects.create(
        account=account, user=user if user and user.is_authenticated else None,
        property=property, connection=connection, action=action, params=params or {},
    )


def activity_record_automatic(
    *, action: str, connection_id: int, property_id: int, params: dict | None = None, when: datetime | None = None
) -> Activity:
    """Record what the system did by itself to a connection (from ids: the engine holds no more)."""
    account_id = Property.all_objects.filter(pk=property_id).values_list("account_id", flat=True).get()
    values = {"created_at": when} if when is not None else {}
    return Activity.objects.create(
        account_id=account_id, user=None, property_id=property_id, connection_id=connection_id, action=action,
        params=params or {}, **values,
    )
