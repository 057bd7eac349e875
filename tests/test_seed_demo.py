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


def test_the_demo_is_imported_by_the_real_engine_before_anything_else_starts(settings, free_port, mailoutbox):
    """What `make run` does: the web app that serves the demo feeds is not running yet, so the
    command serves them itself; the first overview already shows synced syncs, the paused one
    and its email."""
    from syncs.dashboard import dashboard_summary
    from syncs.models import Block, PauseEpisode

    settings.DEMO_MODE = True
    settings.FETCH_ALLOW_LOOPBACK = True
    settings.DEMO_PORTAL_BASE_URL = f"http://127.0.0.1:{free_port}"
    call_command("seed_demo", "--sync")
    user = Account.objects.get().memberships.get().user
    summary = dashboard_summary(user=user)
    assert summary.counts["working"] == 8
    assert summary.counts["paused"] == 1
    assert sum(summary.counts.values()) == 9
    paused = Connection.objects.get(paused_at__isnull=False)
    assert (paused.property.name, paused.portal.slug) == ("Apartamento Sol", "vrbo")
    assert Block.objects.filter(source__isnull=False).count() > 20
    assert [email.subject for email in mailoutbox] == ["Paused: Vrbo sync of Apartamento Sol"]
    assert PauseEpisode.objects.get().notified_at is not None
    assert summary.conflicts  # the demo's deliberate double booking


def test_a_busy_demo_address_leaves_the_import_to_the_worker(settings, capsys):
    import socket

    settings.DEMO_MODE = True
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings.DEMO_PORTAL_BASE_URL = f"http://127.0.0.1:{busy.getsockname()[1]}"
        call_command("seed_demo", "--sync")
    assert "the worker will" in capsys.readouterr().out
    assert not Connection.objects.filter(last_attempt_at__isnull=False).exists()
