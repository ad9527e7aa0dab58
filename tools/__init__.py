"""Developer tools: the local platform supervisor and the feed simulator."""
