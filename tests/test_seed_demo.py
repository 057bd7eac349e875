from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from syncs.models import Account, Connection, Property

pytestmark = pytest.mark.django_db


def test_the_demo_has_an_operator_three_properties_and_their_portal_syncs(settings, capsys):
    settings.DEMO_MODE = True
    call_command("seed_demo")
    assert "demo / demo" in capsys.readouterr().out
    assert Property.objects.count() == 3
    assert Connection.objects.count() == 9
    assert set(Connection.objects.values_list("portal__slug", flat=True)) == {"airbnb", "booking", "vrbo"}
    client = Client()
    response = client.post(reverse("login"), {"username": "demo", "password": "demo"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("home")
    assert "Casa do Rio" in client.get(reverse("property-list")).content.decode()
    assert Property.objects.for_user(Account.objects.get().memberships.get().user).count() == 3


def test_the_demo_import_urls_point_at_the_apps_own_demo_feeds_one_of_them_missing(settings, client):
    settings.DEMO_MODE = True
    call_command("seed_demo")
    statuses = {}
    for connection in Connection.objects.all():
        path = connection.import_url.removeprefix(settings.DEMO_PORTAL_BASE_URL)
        statuses[connection.pk] = client.get(path).status_code
    assert sorted(statuses.values()) == [200] * 8 + [404]


def test_seeding_twice_changes_nothing(settings):
    settings.DEMO_MODE = True
    call_command("seed_demo")
    call_command("seed_demo")
    call_command("seed_demo", "--if-empty")
    assert Property.objects.count() == 3
    assert Connection.objects.count() == 9


def test_the_demo_is_refused_outside_demo_mode(settings):
    settings.DEMO_MODE = False
    with pytest.raises(CommandError, match="DEMO_MODE"):
        call_command("seed_demo")
