"""The task library: ready-made task types for the everyday jobs (outbound HTTP
calls, notifications, file transfers, data batches, SQL maintenance). Each module
holds one type; importing them here is how the registry finds them."""

from taskservice.worker.library.batch_map import batch_map as batch_map
from taskservice.worker.library.files_transfer import files_transfer as files_transfer
from taskservice.worker.library.http_request import http_request as http_request
from taskservice.worker.library.notify_email import notify_email as notify_email
from taskservice.worker.library.notify_webhook import notify_webhook as notify_webhook
from taskservice.worker.library.sql_run import sql_run as sql_run
