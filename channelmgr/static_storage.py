"""Static files named by a hash of their contents, compressed, and cached by browsers for ever.

Django's manifest storage gives the plain names while DEBUG is on, so that a stylesheet being
edited is seen at once; `make run` runs with DEBUG on and would then serve every file with
``max-age=0``, each page revalidating every file. This storage always gives the hashed names:
`make run` collects the files first, and serves what production serves.
"""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    def url(self, name, force=False):
        return super().url(name, force=True)
