"""Review of green readings (kvittering of readings that raised no alert): service, schemas, router."""
