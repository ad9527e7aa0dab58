"""Fleet telemetry: vehicles of municipal and partner fleets and the activity they report."""
