"""The model side: profiles, loading (with the Free-Module merged), prompts, constrained decoding."""
