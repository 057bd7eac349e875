"""What every API view shares: ETags on reads, the JSON body as a form's data, ids from paths,
cursor pagination in a stable order."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils.cache import get_conditional_response, set_response_etag
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from syncs.clean_text import clean
from syncs.id_inputs import parse_id
from syncs.roles import Role


class Cursor(CursorPagination):
    """Pages by cursor, newest rows last unless a view says otherwise; ``?page_size=`` up to 200."""

    ordering = "pk"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request) -> int:
        value = request.query_params.get(self.page_size_query_param)
        if value is None:
            return self.page_size
        size = parse_id(value)
        if size is None:
            raise exceptions.ValidationError({"page_size": [exceptions.ErrorDetail(_("Give a whole number from 1 to 200."), code="invalid")]})
        return min(size, self.max_page_size)


class Conditional:
    """Reads answer with an ETag (of the JSON sent), and 304 to a matching If-None-Match."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.method in ("GET", "HEAD") and response.status_code == 200 and hasattr(response, "add_post_render_callback"):
            django_request = request._request

            def conditional(rendered):
                set_response_etag(rendered)
                return get_conditional_response(django_request, etag=rendered["ETag"], response=rendered)

            response.add_post_render_callback(conditional)
        return response


class ApiView(Conditional, APIView):
    """One route that is not a collection (the overview)."""

    # The least role that reads, and that writes (syncs.api.permissions); an action may say otherwise.
    read_role = Role.VIEWER
    write_role = Role.MANAGER


class ApiViewSet(Conditional, ViewSet):
    """A collection's routes: pages by cursor, rows by id."""

    pagination_class = Cursor
    lookup_value_converter = "int"
    read_role = Role.VIEWER
    write_role = Role.MANAGER

    def paginated(self, queryset, serialize, ordering: str = "pk"):
        paginator = self.pagination_class()
        paginator.ordering = ordering
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serialize(page))


def object_id(value) -> int:
    """The id a path names, or 404 (beyond a database id's range names no row)."""
    number = parse_id(value)
    if number is None:
        raise Http404
    return number


def body(request) -> dict:
    """The JSON object sent, with control characters removed from its texts (as the pages'
    forms have them removed by syncs.middleware); anything but an object is refused."""
    data = request.data
    if not isinstance(data, dict):
        raise exceptions.ParseError(_("Send a JSON object."))
    return {clean(str(key)): clean(value) if isinstance(value, str) else value for key, value in data.items()}


def checked(serializer_class, data: dict) -> dict:
    """The fields of ``data`` the input serializer knows, once their JSON types and bounds are
    right (400 otherwise); the form that follows checks what they mean."""
    serializer = serializer_class(data=data, partial=False)
    serializer.is_valid(raise_exception=True)
    return {name: data[name] for name in serializer.fields if name in data}


def form_refused(form) -> ValidationError:
    """A form's errors as one ValidationError, each message with its code."""
    return ValidationError(form.errors.as_data())

