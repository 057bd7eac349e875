"""Give the properties and exporting connections that existed before export URLs their URL."""

from __future__ import annotations

from django.db import migrations


def create_tokens(apps, schema_editor):
    from syncs.export_tokens import new_token_fields

    Property = apps.get_model("syncs", "Property")
    Connection = apps.get_model("syncs", "Connection")
    ExportToken = apps.get_model("syncs", "ExportToken")
    for prop in Property.objects.all():
        if not ExportToken.objects.filter(property=prop, connection=None, expires_at=None).exists():
            ExportToken.objects.create(property=prop, connection=None, **new_token_fields())
    exporting = Connection.objects.exclude(direction="import_only").filter(export_tokens__isnull=True)
    for connection in exporting:
        ExportToken.objects.create(property_id=connection.property_id, connection=connection, **new_token_fields())


class Migration(migrations.Migration):
    dependencies = [("syncs", "0004_export_feeds")]

    operations = [migrations.RunPython(create_tokens, migrations.RunPython.noop)]
