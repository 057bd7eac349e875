"""Make a personal API token for a member of an account, for scripts and checks: the token is
printed alone on the last line (``… | tail -n 1``). It acts with the member's role in the account."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from syncs.api.tokens import api_token_create
from syncs.models import Membership


class Command(BaseCommand):
    help = "Make an API token of USER in ACCOUNT (by name) and print it alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="The member's username.")
        parser.add_argument("--account", required=True, help="The account's name.")
        parser.add_argument("--name", default="command line", help="The token's name, shown on the profile page and in the activity log.")

    def handle(self, *args, user: str, account: str, name: str, **options):
        person = get_user_model().objects.filter(username=user).first()
        if person is None:
            raise CommandError(f"There is no user “{user}”.")
        memberships = Membership.objects.filter(user=person, account__name=account).select_related("account")
        if not memberships:
            raise CommandError(f"“{user}” is not a member of an account called “{account}”.")
        if len(memberships) > 1:
            raise CommandError(f"“{user}” is a member of several accounts called “{account}”; make the token on the profile page.")
        membership = memberships[0]
        try:
            made = api_token_create(membership=membership, name=name)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(
            f"Token “{made.token.name}” of {user} in {membership.account.name}, acting as {membership.get_role_display()}. "
            "It is shown only now:"
        )
        self.stdout.write(made.secret)
