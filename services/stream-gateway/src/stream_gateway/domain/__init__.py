"""The gateway's rules, pure Python: stream positions, filters, and the derived states
(inventory totals, fleet distance, hub occupancy) folded from the topics' events."""
