"""Verified public updates (bulletins), corrections and retractions, the rumour log and fact-checks."""
