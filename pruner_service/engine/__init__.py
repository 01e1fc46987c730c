"""The model side: profiles, loading (Free-Module merged), prompts, constrained decoding."""
