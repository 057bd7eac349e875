"""What the API answers (output serializers) and what it documents as input.

Inputs are checked by the pages' own forms (syncs.forms), so that a value the dashboard refuses
is refused here with the same words: the input serializers only describe the fields for the
schema."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from syncs.forms import DEFAULT_EXPORT_SUMMARY
from syncs.models import Activity, Connection, Property, SyncState


class Text(serializers.CharField):
    """A JSON string, nothing else: a number where text goes is refused, not read as text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Whole(serializers.IntegerField):
    """A JSON integer, nothing else (not "5", not 5.0, not true)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class YesNo(serializers.BooleanField):
    """JSON true or false, nothing else."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class Choice(serializers.ChoiceField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class Day(serializers.DateField):
    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(value)


class PropertySerializer(serializers.ModelSerializer):
    class Meta:
        model = Property
        fields = ["id", "name", "timezone", "created_at", "updated_at"]
        read_only_fields = fields


class PropertyInput(serializers.Serializer):
    name = Text(max_length=200)
    timezone = Text(max_length=64, help_text="An IANA time zone name, such as Europe/Lisbon.")


class PropertyPatch(PropertyInput):
    name = Text(max_length=200, required=False)
    timezone = Text(max_length=64, required=False)


class RunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    trigger = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    outcome = serializers.CharField(help_text="ok_changed, ok_unchanged, ok_empty, or an error code.")
    http_status = serializers.IntegerField(allow_null=True)
    events_seen = serializers.IntegerField()
    events_added = serializers.IntegerField()
    events_updated = serializers.IntegerField()
    events_removed = serializers.IntegerField()
    error_code = serializers.CharField(help_text="Empty when the run worked.")
    error = serializers.CharField(help_text="The error in words, in the requested language; empty when none.")


class SyncSerializer(serializers.Serializer):
    """A sync as its page shows it: its state and why, its last run, when it runs next."""

    id = serializers.IntegerField()
    property = serializers.IntegerField(source="property_id")
    portal = serializers.CharField(source="portal.slug")
    portal_name = serializers.CharField(source="portal.display_name")
    direction = serializers.ChoiceField(choices=Connection.Direction.choices)
    enabled = serializers.BooleanField(help_text="The operator's switch.")
    state = serializers.ChoiceField(choices=SyncState.choices)
    state_label = serializers.CharField()
    state_words = serializers.CharField(help_text="Why the sync is in its state, in words; empty when it works.")
    state_since = serializers.DateTimeField(allow_null=True)
    error_code = serializers.CharField(help_text="The last error's code (empty after a sync that worked).")
    error = serializers.CharField(help_text="The last error in words, in the requested language.")
    last_run = RunSerializer(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    next_sync_at = serializers.DateTimeField(allow_null=True, help_text="When it is due next (null: not scheduled).")
    sync_requested_at = serializers.DateTimeField(allow_null=True, help_text="Set while a “sync now” waits for a worker.")
    sync_interval_minutes = serializers.IntegerField()
    export_summary = serializers.CharField()
    import_url = serializers.CharField(
        allow_null=True, help_text="The portal's calendar link: a secret, null for viewers."
    )
    created_at = serializers.DateTimeField()


class SyncInput(serializers.Serializer):
    property = Whole(min_value=1, help_text="The property's id.")
    import_url = Text(required=False, allow_blank=True, help_text="Empty only for an export-only sync.")
    portal = Text(
        required=False, allow_null=True, help_text="A portal's slug (airbnb, booking, vrbo...); recognised from the link when left out."
    )
    direction = Choice(choices=Connection.Direction.choices, required=False, default=Connection.Direction.TWO_WAY)
    sync_interval_minutes = Whole(
        required=False, min_value=5, max_value=24 * 60, default=settings.SYNC_DEFAULT_INTERVAL_MINUTES
    )
    export_summary = Text(required=False, max_length=100, default=DEFAULT_EXPORT_SUMMARY)
    check_now = YesNo(required=False, default=False, help_text="Read the link once before saving; nothing is saved if it fails.")


class SyncPatch(serializers.Serializer):
    import_url = Text(required=False, allow_blank=True)
    portal = Text(required=False, allow_null=True)
    direction = Choice(choices=Connection.Direction.choices, required=False)
    sync_interval_minutes = Whole(required=False, min_value=5, max_value=24 * 60)
    export_summary = Text(required=False, max_length=100)
    check_now = YesNo(required=False, default=False)


class SwitchInput(serializers.Serializer):
    enabled = YesNo()


class OverviewSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Every live sync of the account.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Syncs per state; they add up to total.")
    needing_attention = serializers.IntegerField()
    double_bookings = serializers.IntegerField(help_text="Possible double bookings nobody marked handled.")
    double_bookings_handled = serializers.IntegerField()
    nothing_needs_attention = serializers.BooleanField()


class ProblemSerializer(serializers.Serializer):
    """An RFC 9457 problem."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Our error code: invalid, not_authenticated, permission_denied, not_found, throttled...")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.DictField()), required=False,
        help_text="For an invalid request: each field's messages and codes.",
    )


class ExportSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="The export URL to paste into the portal: a secret.")
    created_at = serializers.DateTimeField()
    last_read_at = serializers.DateTimeField(allow_null=True)
    readers = serializers.CharField(help_text="Whether the portal reads it, in words.")
    old_url_works_until = serializers.DateTimeField(allow_null=True, help_text="After a rotation: until when the old URL keeps answering.")


class BlockSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    property = serializers.IntegerField(source="property_id")
    kind = serializers.ChoiceField(choices=["reserved", "blocked", "tentative"])
    start = serializers.DateField(source="start_date", help_text="The first night.")
    end = serializers.DateField(source="end_date", help_text="The check-out day (not a night of the block).")
    summary = serializers.CharField()


class BlockInput(serializers.Serializer):
    property = Whole(min_value=1)
    start = Day(help_text="The first night.")
    end = Day(help_text="The check-out day.")
    kind = Choice(choices=["reserved", "blocked", "tentative"], required=False, default="blocked")
    summary = Text(required=False, allow_blank=True, max_length=255, default="")


class StaySerializer(serializers.Serializer):
    block = serializers.IntegerField()
    sync = serializers.IntegerField(allow_null=True, help_text="The sync it came from; null: made here.")
    source = serializers.CharField(help_text="The portal's name, or “made here”.")
    first_night = serializers.DateField()
    check_out = serializers.DateField()
    kind = serializers.CharField()


class DoubleBookingSerializer(serializers.Serializer):
    property = serializers.IntegerField()
    property_name = serializers.CharField()
    key = serializers.CharField(help_text="Which stays clash; send it back to mark the double booking handled.")
    fingerprint = serializers.CharField(help_text="What the stays say now; send it back to mark it handled.")
    handled = serializers.BooleanField()
    note = serializers.CharField()
    first_night = serializers.DateField(help_text="The first clashing night.")
    last_night = serializers.DateField(help_text="The last clashing night.")
    nights = serializers.IntegerField(help_text="How many nights clash.")
    nights_words = serializers.CharField(help_text="The clashing nights in words, in the requested language.")
    runs = serializers.ListField(child=serializers.ListField(child=serializers.DateField()), help_text="[first night, check-out day] of each stretch of clashing nights.")
    stays = StaySerializer(many=True)


class HandleInput(serializers.Serializer):
    property = Whole(min_value=1)
    key = Text(max_length=64)
    fingerprint = Text(max_length=64)
    note = Text(required=False, allow_blank=True, default="", max_length=500)


class ActivitySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=Activity.Action.choices)
    action_words = serializers.CharField(help_text="What was done, in words.")
    details = serializers.CharField(help_text="Its details in words; empty when the action says it all.")
    user = serializers.CharField(allow_null=True, help_text="The member's username; null when the system did it.")
    automatic = serializers.BooleanField()
    api_token = serializers.CharField(allow_null=True, help_text="The name of the API token that did it, if one did.")
    property = serializers.IntegerField(allow_null=True, source="property_id")
    sync = serializers.IntegerField(allow_null=True, source="connection_id")
