"""Names ordered by the database: each property keeps its name's order key in every language's
rule (``syncs.collation.order_key``), so that the properties list and the timeline page in SQL
and still list names as the reader's language orders them (``sort_key``), the same as before."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from syncs.collation import order_key, sort_key
from syncs.models import Membership, Property
from syncs.timeline import PROPERTIES_PER_PAGE
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory

TIMELINE_ROW = re.compile(r'<tr id="tl-property-(\d+)"')
LIST_ROW = re.compile(r'<tr id="property-(\d+)">')
# Letters that order differently by accent, case, the Spanish "ñ", letters Unicode does not
# decompose, expansions ("ß", "ﬁ"), spaces, a NUL and the highest code point (the "ñ" marker's).
ALPHABET = "aAáÁànNñÑoOóøØsSßﬁ zZ \x00\x01\U0010ffff"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=8), min_size=2, max_size=8), st.sampled_from(["en", "pt", "es"]))
def test_the_stored_key_orders_names_as_the_readers_language_does(names, language):
    by_key = sorted(names, key=lambda name: order_key(name, language))
    assert by_key == sorted(names, key=lambda name: sort_key(name, language))


@pytest.mark.django_db
def test_the_order_keys_follow_every_way_a_property_is_written():
    account = MembershipFactory().account
    made = Property.objects.create(account=account, name="Ático", timezone="UTC")
    Property.objects.bulk_create([Property(account=account, name="Ñandú", timezone="UTC")])
    made.name = "Nube"
    made.save()
    keys = {name: (bytes(en), bytes(es)) for name, en, es in Property.objects.values_list("name", "name_order", "name_order_es")}
    assert keys == {name: (order_key(name, "en"), order_key(name, "es")) for name in ("Nube", "Ñandú")}


def _signed_in(membership: Membership, language: str) -> Client:
    Membership.objects.filter(pk=membership.pk).update(language=language)
    client = Client()
    client.force_login(membership.user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "es"])
def test_the_timeline_pages_continue_in_name_order_and_the_state_filter_counts_right(language):
    owner = MembershipFactory(role=Membership.Role.OWNER)
    now = timezone.now()
    names = [f"{prefix} {index:02d}" for index, prefix in enumerate(["Ñandú", "nube", "Nube", "Ático", "atico"] * 12)]
    for index, name in enumerate(names):
        paused = {"paused_at": now, "pause_reason": "http_404"} if index % 2 == 0 else {}
        ConnectionFactory(property=PropertyFactory(account=owner.account, name=name), **paused)
    client = _signed_in(owner, language)
    pk_of = dict(Property.objects.values_list("name", "pk"))
    for query, kept in (({}, names), ({"state": "paused"}, names[::2])):
        expected = [str(pk_of[name]) for name in sorted(kept, key=lambda name: sort_key(name, language))]
        first = client.get(reverse("timeline"), query).content.decode()
        rows = TIMELINE_ROW.findall(first)
        for number in range(2, -(-len(kept) // PROPERTIES_PER_PAGE) + 1):  # "More properties", page after page
            more = client.get(reverse("timeline"), {**query, "page": number}, HTTP_HX_REQUEST="true").content.decode()
            rows += TIMELINE_ROW.findall(more)
        assert rows == expected
        assert len(TIMELINE_ROW.findall(first)) == PROPERTIES_PER_PAGE < len(kept)
        assert re.search(r"<p>(\d+) ", first).group(1) == str(len(kept))  # the count above the rows
        listed = client.get(reverse("property-list"), {**query, "sort": "-name"}).content.decode()
        assert LIST_ROW.findall(listed) == expected[::-1][:PROPERTIES_PER_PAGE]
