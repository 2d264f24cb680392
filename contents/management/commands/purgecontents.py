"""``manage.py purgecontents``: drop what outlived its retention.

Deleted files and directories older than ``JSERVER_DELETED_RETENTION_DAYS``
(with their checkpoints) and chunked uploads abandoned for a day. Deletes do
this for their user as they go; run this daily (cron, a systemd timer) so that
users who stopped deleting are purged too.
"""

from django.core.management.base import BaseCommand

from contents import manager


class Command(BaseCommand):
    help = "Purge deleted files past their retention and abandoned uploads."

    def handle(self, *args, **options) -> None:
        deleted = manager.purge_deleted()
        uploads = manager.purge_uploads()
        self.stdout.write(
            f"purged {deleted} deleted item(s) and {uploads} abandoned upload(s)"
        )
