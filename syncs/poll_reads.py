"""What a poll reads before it parses a feed that changed: the property's zone and the portal's
labels (how the feed is read), and the connection's blocks (what the feed is compared with).

Both statements are written once from the models' own names and sent past the ORM
(syncs/direct_sql.py). In a poll's rhythm, right after a fetch, building these queries with the
ORM and loading model instances from them cost 0.4 to 0.9 ms each, several times what the
database took to answer (bench/sync.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date

from django.db import connection as db_connection

from syncs import direct_sql
from syncs.diff import StoredBlock
from syncs.models import Block, Portal, Property, today_in

# In StoredBlock's order.
STORED_BLOCK_FIELDS = ("id", "uid", "recurrence_id", "start_date", "end_date", "kind", "summary", "text_digest")


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """What, besides its text, decides how a connection's feed is read."""

    timezone: str  # the property's: nights are counted in it
    labels: dict  # the portal's summary prefixes for reserved, blocked and tentative

    def today(self) -> date:
        return today_in(self.timezone)


def feed_settings(*, property_id: int, portal_id: int) -> FeedSettings | None:
    """The settings for a connection's feed; None if its property or portal is gone."""
    sql, fields = _feed_settings_statement()
    row = direct_sql.execute_one(sql, [property_id, portal_id])
    if row is None:
        return None
    timezone, labels = direct_sql.converted(row, fields, direct_sql.database())
    return FeedSettings(timezone=timezone, labels=labels)


def stored_blocks(*, connection_id: int) -> list[StoredBlock]:
    """The connection's blocks that are not removed, as the diff compares them."""
    sql, fields = _stored_blocks_statement()
    db = direct_sql.database()
    return [StoredBlock(*direct_sql.converted(row, fields, db)) for row in direct_sql.execute_all(sql, [connection_id])]


@functools.cache
def _feed_settings_statement() -> tuple[str, list]:
    quote = db_connection.ops.quote_name
    prop, portal = Property._meta, Portal._meta
    fields = [*direct_sql.field_converters(Property, ["timezone"]), *direct_sql.field_converters(Portal, ["labels"])]
    return (
        f"SELECT p.{quote(prop.get_field('timezone').column)}, o.{quote(portal.get_field('labels').column)} "
        f"FROM {quote(prop.db_table)} p, {quote(portal.db_table)} o "
        f"WHERE p.{quote(prop.pk.column)} = %s AND o.{quote(portal.pk.column)} = %s",
        fields,
    )


@functools.cache
def _stored_blocks_statement() -> tuple[str, list]:
    quote = db_connection.ops.quote_name
    meta = Block._meta
    fields = direct_sql.field_converters(Block, STORED_BLOCK_FIELDS)
    column = {name: quote(meta.get_field(name).column) for name in ("source", "removed_at")}
    return (
        f"SELECT {', '.join(quote(field.column) for field, _ in fields)} FROM {quote(meta.db_table)} "
        f"WHERE {column['source']} = %s AND {column['removed_at']} IS NULL"
        # The model's own order, as the ORM read them: the diff's lists (and so the history's
        # rows) follow it.
        f" ORDER BY {quote(meta.get_field('start_date').column)}, {quote(meta.pk.column)}",
        fields,
    )
