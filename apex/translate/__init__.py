"""Protocol translation between client and upstream dialects (pure: no I/O, no clock).

``find_translator(client, upstream)`` returns the Translator for one direction, or None
when the pair has none. The pipeline asks once per (channel, client dialect) when the
Snapshot is built, never per request.
"""

from apex.translate.base import StreamTranslator, TranslateContext, Translator, find_translator, register

__all__ = ["StreamTranslator", "TranslateContext", "Translator", "find_translator", "register"]
