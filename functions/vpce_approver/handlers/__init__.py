"""Lambda handlers: parse, call the domain, return."""
