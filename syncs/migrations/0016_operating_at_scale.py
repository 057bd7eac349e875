# Operating at scale (issue 21): alerts per member, bulk actions, double bookings marked handled,
# webhooks, onboarding by file. email_paused becomes email_alerts (on: all properties; off: none).
from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def email_paused_to_email_alerts(apps, schema_editor):
    Membership = apps.get_model("syncs", "Membership")
    Membership.objects.filter(email_paused=True).update(email_alerts="all")
    Membership.objects.filter(email_paused=False).update(email_alerts="none")


def email_alerts_to_email_paused(apps, schema_editor):
    Membership = apps.get_model("syncs", "Membership")
    Membership.objects.update(email_paused=True)
    Membership.objects.filter(email_alerts="none").update(email_paused=False)


class Migration(migrations.Migration):

    dependencies = [
        ('syncs', '0015_connection_settings_version'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='membership',
            name='assigned_properties',
            field=models.ManyToManyField(blank=True, related_name='assigned_memberships', to='syncs.property', verbose_name='assigned properties'),
        ),
        migrations.AddField(
            model_name='membership',
            name='digest_sent_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='last digest sent at'),
        ),
        migrations.AddField(
            model_name='membership',
            name='email_alerts',
            field=models.CharField(choices=[('all', 'About all properties'), ('assigned', 'Only about properties assigned to me'), ('none', 'None')], default='all', help_text='Emails when a sync pauses, a daily reminder while it stays paused, and one when it works again.', max_length=10, verbose_name='emails about paused syncs'),
        ),
        migrations.AddField(
            model_name='membership',
            name='email_digest',
            field=models.BooleanField(default=False, help_text='One email a day with what is paused or failing and what happened, instead of one email per pause.', verbose_name='one daily digest instead'),
        ),
        migrations.RunPython(email_paused_to_email_alerts, email_alerts_to_email_paused),
        migrations.RemoveField(
            model_name='membership',
            name='email_paused',
        ),
        migrations.AlterField(
            model_name='activity',
            name='action',
            field=models.CharField(choices=[('switched_on', 'switched the sync on'), ('switched_off', 'switched the sync off'), ('sync_requested', 'pressed Sync now'), ('held_accepted', 'accepted the held removals'), ('export_rotated', 'issued a new export URL'), ('connection_created', 'added the sync'), ('connection_edited', 'edited the sync'), ('property_created', 'added the property'), ('property_edited', 'edited the property'), ('block_added', 'closed nights'), ('block_removed', 'opened nights'), ('test_block_added', 'added a test block'), ('test_block_removed', 'removed the test block'), ('paused', 'paused the sync'), ('resumed', 'resumed the sync'), ('pause_email_sent', 'emailed that the sync is paused'), ('reminder_sent', 'emailed a reminder that the sync is still paused'), ('restored_email_sent', 'emailed that the sync works again'), ('member_invited', 'invited a member'), ('invitation_resent', 'sent an invitation again'), ('invitation_revoked', 'revoked an invitation'), ('member_joined', 'joined the account'), ('role_changed', "changed a member's role"), ('member_removed', 'removed a member'), ('password_set', 'set their first password'), ('password_reset', 'reset their password by email'), ('password_changed', 'changed their password'), ('two_factor_enabled', 'turned on two-factor sign-in'), ('two_factor_disabled', 'turned off two-factor sign-in'), ('recovery_codes_renewed', 'made new recovery codes'), ('recovery_code_used', 'signed in with a recovery code'), ('two_factor_required', 'required two-factor sign-in for every member'), ('two_factor_optional', 'made two-factor sign-in optional'), ('bulk_switched_off', 'switched several syncs off at once'), ('bulk_switched_on', 'switched several syncs on at once'), ('bulk_sync_requested', 'pressed Sync now for several syncs at once'), ('bulk_held_accepted', 'accepted the held removals of several syncs at once'), ('properties_assigned', 'assigned properties to a member'), ('properties_unassigned', 'took properties away from a member'), ('double_booking_handled', 'marked a double booking as handled'), ('double_booking_back', 'showed a handled double booking again: a stay changed'), ('webhook_added', 'added a webhook'), ('webhook_removed', 'removed a webhook'), ('syncs_imported', 'added syncs from a file')], max_length=30, verbose_name='action'),
        ),
        migrations.CreateModel(
            name='BulkAction',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('switch_off', 'Switch off'), ('switch_on', 'Switch on'), ('sync_now', 'Sync now'), ('accept_held', 'Accept held removals')], max_length=20, verbose_name='action')),
                ('connection_ids', models.JSONField(default=list, verbose_name='syncs')),
                ('awaited_ids', models.JSONField(default=list, verbose_name='syncs awaited')),
                ('held_answers', models.JSONField(default=dict, verbose_name='held answers accepted')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created')),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='bulk_actions', to='syncs.account', verbose_name='account')),
                ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'bulk action',
                'verbose_name_plural': 'bulk actions',
                'ordering': ['-created_at', '-pk'],
            },
        ),
        migrations.CreateModel(
            name='NotReadingAlert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('alerted_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='told at')),
                ('connection', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='not_reading_alert', to='syncs.connection', verbose_name='connection')),
            ],
            options={
                'verbose_name': 'portal not reading alert',
                'verbose_name_plural': 'portal not reading alerts',
            },
        ),
        migrations.CreateModel(
            name='OnboardingUpload',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('filename', models.CharField(blank=True, max_length=200, verbose_name='file name')),
                ('rows', models.JSONField(default=list, verbose_name='rows')),
                ('live_requested_at', models.DateTimeField(blank=True, null=True, verbose_name='live check asked at')),
                ('live_checked', models.PositiveIntegerField(default=0, verbose_name='rows checked live')),
                ('imported_at', models.DateTimeField(blank=True, null=True, verbose_name='imported at')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created')),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='onboarding_uploads', to='syncs.account', verbose_name='account')),
                ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'sync file',
                'verbose_name_plural': 'sync files',
                'ordering': ['-created_at', '-pk'],
            },
        ),
        migrations.CreateModel(
            name='Webhook',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('url', models.CharField(max_length=2000, verbose_name='URL')),
                ('events', models.JSONField(default=list, verbose_name='events')),
                ('slack_text', models.BooleanField(default=False, help_text='Chat tools that accept incoming webhooks show the field “text” as the message.', verbose_name='add a text field (Slack, Mattermost, Teams)')),
                ('secret_nonce', models.CharField(max_length=32, verbose_name='secret nonce')),
                ('enabled', models.BooleanField(default=True, verbose_name='on')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created')),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhooks', to='syncs.account', verbose_name='account')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='created by')),
            ],
            options={
                'verbose_name': 'webhook',
                'verbose_name_plural': 'webhooks',
                'ordering': ['created_at', 'pk'],
            },
        ),
        migrations.CreateModel(
            name='DoubleBooking',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=64, verbose_name='stays')),
                ('fingerprint', models.CharField(max_length=64, verbose_name='fingerprint')),
                ('start_date', models.DateField(verbose_name='first night')),
                ('end_date', models.DateField(verbose_name='check-out day')),
                ('sources', models.JSONField(default=list, verbose_name='sources')),
                ('first_seen_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='first seen')),
                ('handled_fingerprint', models.CharField(blank=True, max_length=64, verbose_name='handled as')),
                ('handled_at', models.DateTimeField(blank=True, null=True, verbose_name='marked handled at')),
                ('note', models.TextField(blank=True, max_length=2000, verbose_name='note')),
                ('alerted_fingerprint', models.CharField(blank=True, max_length=64, verbose_name='webhooks told about')),
                ('handled_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='marked handled by')),
                ('property', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='double_bookings', to='syncs.property', verbose_name='property')),
            ],
            options={
                'verbose_name': 'double booking',
                'verbose_name_plural': 'double bookings',
                'constraints': [models.UniqueConstraint(fields=('property', 'key'), name='one_double_booking_per_stays')],
            },
        ),
        migrations.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event', models.CharField(max_length=20, verbose_name='event')),
                ('test', models.BooleanField(default=False, verbose_name='test')),
                ('payload', models.JSONField(default=dict, verbose_name='payload')),
                ('status', models.CharField(choices=[('pending', 'Sending'), ('delivered', 'Delivered'), ('failed', 'Failed'), ('dropped', 'Not sent: no longer true')], default='pending', max_length=10, verbose_name='status')),
                ('attempts', models.PositiveSmallIntegerField(default=0, verbose_name='attempts')),
                ('next_attempt_at', models.DateTimeField(blank=True, null=True, verbose_name='next attempt')),
                ('log', models.JSONField(default=list, verbose_name='attempts log')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created')),
                ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished')),
                ('connection', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='syncs.connection', verbose_name='connection')),
                ('webhook', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='syncs.webhook', verbose_name='webhook')),
            ],
            options={
                'verbose_name': 'webhook delivery',
                'verbose_name_plural': 'webhook deliveries',
                'ordering': ['-created_at', '-pk'],
                'indexes': [models.Index(fields=['status', 'next_attempt_at'], name='webhookdelivery_due')],
            },
        ),
    ]
