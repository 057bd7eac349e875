"""One sync's state as each place shows it: the overview (its tile and attention row), the
properties list (the property's health), the property page (the sync's row), the connection page
(its heading) and the last email about it. Tests of the states use these so that every place is
checked the same way, and every overview read checks that its tiles add up to the account's syncs.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from django.urls import reverse

from syncs.models import Account, Connection
from syncs.sync_state import SyncState, connection_status, state_decided, state_sweep

_TILE = re.compile(r'<span class="count[^"]*" data-state="(\w+)"><strong>(\d+)</strong>')
_ATTENTION = re.compile(r'<tr id="attention-(\d+)" data-state="(\w+)">')
_PROPERTY_ROW = re.compile(r'<tr id="property-(\d+)">(.*?)</tr>', re.DOTALL)
_BADGE_STATE = re.compile(r'data-state="(\w+)"')
_CONNECTION_ROW = re.compile(r'<tr id="connection-(\d+)"[^>]*>(.*?)</tr>', re.DOTALL)
_HEADING = re.compile(r"<h1>.*?data-state=\"(\w+)\".*?</h1>", re.DOTALL)


def sync_state_of(connection: Connection) -> SyncState:
    """The state the pages read for the connection as it is in the database now, once the sweep
    ran (a change by time alone shows within one sweep)."""
    state_sweep()
    fresh = Connection.objects.select_related("portal", "property").get(pk=connection.pk)
    return connection_status(fresh).state


def states_not_as_stored(now) -> list[tuple[int, str, str]]:
    """(sync, stored state, classify's state at ``now``) of every live sync whose stored state is
    not what the rules say now, leaving out those the sweep is due to decide again."""
    live = Connection.objects.exclude(state_changes_at__lte=now)
    return [(pk, stored, decided) for pk, stored, decided in state_decided(live, now=now) if stored != decided]


def overview_tiles(client) -> dict[str, int]:
    """The overview's tiles, asserting that they add up to the number of the account's syncs."""
    page = client.get(reverse("home")).content.decode()
    return tiles_in(page, account=Account.of_user(client_user(client)))


def client_user(client):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def tiles_in(page: str, *, account: Account) -> dict[str, int]:
    """Every state's count on the overview's line of counts, where the states no sync is in are
    left out (0 here)."""
    shown = {state: int(n) for state, n in _TILE.findall(page)}
    assert 0 not in shown.values(), f"a count of 0 is shown: {shown}"
    tiles = dict.fromkeys(SyncState.values, 0) | shown
    syncs = Connection.objects.for_account(account).count()
    assert sum(tiles.values()) == syncs, f"the tiles add up to {sum(tiles.values())}, the account has {syncs} syncs: {tiles}"
    return tiles


@dataclass
class Places:
    """Where one sync's state is shown, and what each place shows."""

    overview_attention: str | None  # the state of its attention row, None when not listed
    overview_tiles: dict[str, int]
    property_health: list[str]  # the states in its property's health cell, worst first
    property_row: str
    connection_heading: str
    overview_page: str  # the pages' text as read (HTML entities decoded)
    property_list_page: str
    connection_page: str

    def everywhere(self, state: SyncState) -> None:
        """The same state in every place: its tile counts it, the attention list has it exactly
        when it needs attention, its property's health and its own row and page say it."""
        assert self.overview_tiles[state.value] >= 1, (state, self.overview_tiles)
        if state in (SyncState.WORKING, SyncState.SWITCHED_OFF):
            assert self.overview_attention is None
        else:
            assert self.overview_attention == state.value
        assert state.value in self.property_health, (state, self.property_health)
        assert self.property_row == state.value
        assert self.connection_heading == state.value


def places(client, connection: Connection) -> Places:
    """Read every page that shows ``connection``'s state, as its operator sees them once the
    sweep ran (a change by time alone shows within one sweep)."""
    state_sweep()
    account = Account.of_user(client_user(client))
    overview = client.get(reverse("home")).content.decode()
    tiles = tiles_in(overview, account=account)
    attention = dict(_ATTENTION.findall(overview)).get(str(connection.pk))
    listing = client.get(reverse("property-list"), {"q": connection.property.name}).content.decode()
    rows = dict(_PROPERTY_ROW.findall(listing))
    health = _BADGE_STATE.findall(rows[str(connection.property_id)])
    property_page = client.get(reverse("property-detail", args=[connection.property_id])).content.decode()
    row = dict(_CONNECTION_ROW.findall(property_page))[str(connection.pk)]
    connection_page = client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    return Places(
        overview_attention=attention,
        overview_tiles=tiles,
        property_health=health,
        property_row=_BADGE_STATE.search(row).group(1),
        connection_heading=_HEADING.search(connection_page).group(1),
        overview_page=html.unescape(overview),
        property_list_page=html.unescape(listing),
        connection_page=html.unescape(connection_page),
    )
