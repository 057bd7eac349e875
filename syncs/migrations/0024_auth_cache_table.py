"""The table of the shared cache (settings.CACHES) when no Redis is configured: limits such as
the password-reset ones count there for every process. Made here rather than by
``createcachetable`` so that every deployment has it after ``migrate``, whichever cache it uses
today."""

from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations

CACHE_TABLE = "channelmgr_cache"  # settings.CACHE_TABLE


def create_cache_table(apps, schema_editor):
    command = CreateCacheTable()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, CACHE_TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(CACHE_TABLE)}")


class Migration(migrations.Migration):
    dependencies = [("syncs", "0023_isolate_webhook_turns")]

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
