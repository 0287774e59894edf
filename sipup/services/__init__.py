"""Plain service functions per domain: they take explicit arguments, return data, raise DomainError."""
