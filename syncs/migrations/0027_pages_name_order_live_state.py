from django.db import migrations, models

import syncs.collation


def order_names(apps, schema_editor):
    """Every existing property's order keys, by the rule new ones get them (syncs.collation)."""
    Property = apps.get_model("syncs", "Property")
    batch = []
    for prop in Property.objects.only("pk", "name").iterator(chunk_size=2000):
        prop.name_order = syncs.collation.order_key(prop.name, "en")
        prop.name_order_es = syncs.collation.order_key(prop.name, "es")
        batch.append(prop)
        if len(batch) == 2000:
            Property.objects.bulk_update(batch, ["name_order", "name_order_es"])
            batch = []
    Property.objects.bulk_update(batch, ["name_order", "name_order_es"])


class Migration(migrations.Migration):

    dependencies = [
        ('syncs', '0026_double_booking_current'),
    ]

    operations = [
        migrations.AddField(
            model_name='property',
            name='name_order',
            field=syncs.collation.OrderKeyField(default=b'', language='en', source='name', verbose_name='name, as ordered'),
        ),
        migrations.AddField(
            model_name='property',
            name='name_order_es',
            field=syncs.collation.OrderKeyField(default=b'', language='es', source='name', verbose_name='name, as ordered in Spanish'),
        ),
        migrations.RunPython(order_names, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='connection',
            index=models.Index(condition=models.Q(('archived_at__isnull', True)), fields=['state', 'property'], name='connection_live_state_property'),
        ),
    ]
