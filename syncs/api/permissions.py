"""What a request may do: the role rule of the pages (syncs.roles), per route and method.

Reads need a viewer, writes a manager, unless a view names another role (``write_role``,
``read_role``). A request without credentials is refused with 401; a member whose role does not
allow the method, with 403 and the same words the pages say.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from rest_framework import permissions
from rest_framework.exceptions import PermissionDenied

from syncs.roles import Role, role_check


class RolePermission(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            role = getattr(view, "read_role", Role.VIEWER)
        else:
            role = getattr(view, "write_role", Role.MANAGER)
        try:
            role_check(request, role)
        except DjangoPermissionDenied as refused:
            raise PermissionDenied(str(refused) or None) from None
        return True
