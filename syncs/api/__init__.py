"""The REST API (/api/v1/): the same services as the pages, reached with a personal token or a
signed-in session. One module per job: tokens, authentication, permissions, throttles, problems
(RFC 9457 errors), pagination, serializers, views by resource, urls."""
