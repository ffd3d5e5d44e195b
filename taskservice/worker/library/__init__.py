"""The task library: ready-made task types for the everyday jobs (outbound HTTP
calls, notifications, file transfers, data batches, SQL maintenance). Each module
holds one type; importing them here is how the registry finds them."""

from taskservice.worker.library.batch_map import batch_map as batch_map
