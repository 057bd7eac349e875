from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('syncs', '0014_hostile_input_guards'),
    ]

    operations = [
        migrations.AddField(
            model_name='connection',
            name='settings_version',
            field=models.PositiveBigIntegerField(default=0, editable=False, verbose_name='settings version'),
        ),
    ]
