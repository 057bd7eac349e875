"""Create an account and its first owner, and print the one-time link where the owner sets a
password: how a fresh installation gets its first person in, with no shell access needed later
(the owner invites everyone else from the Members page)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from syncs.members import account_create


class Command(BaseCommand):
    help = (
        "Create an account with its first owner and print the link (valid FIRST_PASSWORD_LINK_HOURS, once) where the "
        "owner sets a password. Run again with the same name and email for a new link while no password is set."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The account's name, e.g. the operator's company.")
        parser.add_argument("--owner-email", required=True, help="The first owner's email address.")
        parser.add_argument("--owner-username", default="", help="The owner's username (default: the email address).")

    def handle(self, *args, name: str, owner_email: str, owner_username: str, **options):
        try:
            validate_email(owner_email.strip())
            created = account_create(name=name, owner_email=owner_email, owner_username=owner_username)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        owner = created.owner
        self.stdout.write(self.style.SUCCESS(f"Account “{created.account.name}” is ready; its owner is {owner.email}."))
        if created.link:
            self.stdout.write(
                f"The owner sets a password at this link (it works once, for {settings.FIRST_PASSWORD_LINK_HOURS} hours), "
                f"then logs in as “{owner.get_username()}”:\n\n  {created.link}\n"
            )
        else:
            self.stdout.write(f"{owner.email} has a password already: they log in as “{owner.get_username()}”.")
