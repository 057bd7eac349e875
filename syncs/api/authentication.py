"""Who an API request is: ``Authorization: Bearer cm_…`` (a personal token, no CSRF: a browser
never sends it by itself), or the signed-in session (with CSRF, as every page's form)."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from channelmgr.client_ip import client_ip
from syncs.activity import API_TOKEN_NAME
from syncs.api.tokens import api_token_find, api_token_touch
from syncs.models import Membership


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Acts as the token's user in the token's account, with the role the user has there now."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Send the token as “Authorization: Bearer <token>”."))
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("This token is not valid, or it was revoked.")) from None
        use = api_token_find(secret)
        if use is None:
            raise exceptions.AuthenticationFailed(_("This token is not valid, or it was revoked."))
        user = use.membership.user
        # Every service the request calls works in the token's account (Membership.current_of),
        # and every activity entry it writes names the token.
        Membership.work_in(user, use.membership)
        setattr(user, API_TOKEN_NAME, use.token.name)
        api_token_touch(token=use.token, address=client_ip(request._request) or None)
        return user, use.token

    def authenticate_header(self, request) -> str:
        # A 401, not a 403, for a request without credentials.
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal API token (cm_…), made on your profile page."}
