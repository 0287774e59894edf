"""Background jobs. Each job is a few lines that take ids and call a service (see the queue issue)."""
