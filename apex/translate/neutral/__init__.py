"""The neutral middle of translation: what readers produce and writers consume (no dialect's wire shapes)."""
