"""Near-real-time updates: a new acquisition appended to a result by sequential least
squares, the model refitted recursively, alerts; pure (the job layer writes and posts)."""
