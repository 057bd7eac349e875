"""Seed the portals with what we know of their feeds (syncs.portals.CATALOGUE).

Upserts by slug, so running it on a database that already has portals refreshes their facts
without touching the connections that point at them.
"""

from __future__ import annotations

from django.db import migrations


def seed_portals(apps, schema_editor):
    from syncs.portals import CATALOGUE

    Portal = apps.get_model("syncs", "Portal")
    for position, info in enumerate(CATALOGUE):
        Portal.objects.update_or_create(
            slug=info.slug,
            defaults={
                "name": info.name,
                "host_patterns": list(info.host_patterns),
                "prodid_markers": list(info.prodid_markers),
                "labels": info.labels_as_lists(),
                "pickup_delay_min_minutes": info.pickup_delay_min_minutes,
                "pickup_delay_max_minutes": info.pickup_delay_max_minutes,
                "position": position,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("syncs", "0001_initial")]

    operations = [migrations.RunPython(seed_portals, migrations.RunPython.noop)]
