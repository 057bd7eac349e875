from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('syncs', '0010_block_text_digest'),
    ]

    operations = [
        migrations.AddField(
            model_name='connection',
            name='settings_version',
            field=models.PositiveBigIntegerField(default=0, editable=False, verbose_name='settings version'),
        ),
    ]
