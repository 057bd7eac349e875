"""Members and roles: a person may belong to several accounts, with a role in each.

Memberships made before roles existed could do everything: they become owners, and (one per
person then) their person's current account.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def existing_members_become_owners(apps, schema_editor):
    Membership = apps.get_model("syncs", "Membership")
    Membership.objects.update(role="owner", is_current=True, email_paused=True)


class Migration(migrations.Migration):

    dependencies = [
        ('syncs', '0011_connection_checking_activity_zone'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Invitation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('email', models.EmailField(max_length=254, verbose_name='email')),
                ('role', models.CharField(choices=[('owner', 'Owner'), ('manager', 'Manager'), ('viewer', 'Viewer')], default='viewer', max_length=10, verbose_name='role')),
                ('language', models.CharField(blank=True, choices=[('en', 'English'), ('pt', 'Portuguese'), ('es', 'Spanish')], max_length=10, verbose_name='language of the email')),
                ('token_hash', models.CharField(max_length=64, unique=True, verbose_name='token hash')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created')),
                ('sent_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='sent at')),
                ('expires_at', models.DateTimeField(verbose_name='link works until')),
                ('accepted_at', models.DateTimeField(blank=True, null=True, verbose_name='accepted at')),
                ('revoked_at', models.DateTimeField(blank=True, null=True, verbose_name='revoked at')),
            ],
            options={
                'verbose_name': 'invitation',
                'verbose_name_plural': 'invitations',
                'ordering': ['-sent_at', '-pk'],
            },
        ),
        migrations.AddField(
            model_name='account',
            name='require_two_factor',
            field=models.BooleanField(default=False, help_text='Every member signs in with a code from an authenticator app too; members without one set it up at their next sign-in.', verbose_name='require two-factor sign-in'),
        ),
        migrations.AddField(
            model_name='membership',
            name='email_paused',
            field=models.BooleanField(default=True, help_text='Emails when a sync of this account pauses, a daily reminder while it stays paused, and one when it works again.', verbose_name='email me about paused syncs'),
        ),
        migrations.AddField(
            model_name='membership',
            name='is_current',
            field=models.BooleanField(default=False, verbose_name='current account'),
        ),
        migrations.AddField(
            model_name='membership',
            name='role',
            field=models.CharField(choices=[('owner', 'Owner'), ('manager', 'Manager'), ('viewer', 'Viewer')], default='viewer', max_length=10, verbose_name='role'),
        ),
        migrations.AlterField(
            model_name='activity',
            name='action',
            field=models.CharField(choices=[('switched_on', 'switched the sync on'), ('switched_off', 'switched the sync off'), ('sync_requested', 'pressed Sync now'), ('held_accepted', 'accepted the held removals'), ('export_rotated', 'issued a new export URL'), ('connection_created', 'added the sync'), ('connection_edited', 'edited the sync'), ('property_created', 'added the property'), ('property_edited', 'edited the property'), ('block_added', 'closed nights'), ('block_removed', 'opened nights'), ('member_invited', 'invited a member'), ('invitation_resent', 'sent an invitation again'), ('invitation_revoked', 'revoked an invitation'), ('member_joined', 'joined the account'), ('role_changed', "changed a member's role"), ('member_removed', 'removed a member'), ('password_set', 'set their first password'), ('password_reset', 'reset their password by email'), ('password_changed', 'changed their password'), ('two_factor_enabled', 'turned on two-factor sign-in'), ('two_factor_disabled', 'turned off two-factor sign-in'), ('recovery_codes_renewed', 'made new recovery codes'), ('recovery_code_used', 'signed in with a recovery code'), ('two_factor_required', 'required two-factor sign-in for every member'), ('two_factor_optional', 'made two-factor sign-in optional')], max_length=30, verbose_name='action'),
        ),
        migrations.AlterField(
            model_name='membership',
            name='user',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL, verbose_name='user'),
        ),
        migrations.RunPython(existing_members_become_owners, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='membership',
            constraint=models.UniqueConstraint(fields=('user', 'account'), name='one_membership_per_user_and_account'),
        ),
        migrations.AddConstraint(
            model_name='membership',
            constraint=models.UniqueConstraint(condition=models.Q(('is_current', True)), fields=('user',), name='one_current_membership_per_user'),
        ),
        migrations.AddField(
            model_name='invitation',
            name='accepted_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='accepted by'),
        ),
        migrations.AddField(
            model_name='invitation',
            name='account',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='invitations', to='syncs.account', verbose_name='account'),
        ),
        migrations.AddField(
            model_name='invitation',
            name='invited_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='invited by'),
        ),
        migrations.AddConstraint(
            model_name='invitation',
            constraint=models.UniqueConstraint(condition=models.Q(('accepted_at__isnull', True), ('revoked_at__isnull', True)), fields=('account', 'email'), name='one_pending_invitation_per_account_and_email'),
        ),
    ]
