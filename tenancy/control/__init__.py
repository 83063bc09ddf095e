"""Control-plane operations behind the admin API: each one is a transaction, one audit entry
and one invalidation. The HTTP layer only parses bodies and renders answers."""
