"""Partner registry: the green initiatives Aalborg Kommune takes part in and who is behind them."""
