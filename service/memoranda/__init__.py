"""Memoranda of cooperation between the municipality and partner organisations: documents, signing, verification."""
