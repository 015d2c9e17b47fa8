"""Public consultations with partner organisations, the decisions taken with their votes, and their archive."""
