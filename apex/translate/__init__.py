"""Protocol translation between client and upstream dialects (pure: no I/O, no clock).

N upstream readers and M client writers meet in one neutral vocabulary, so Apex needs
N + M state machines, not N x M:

- ``base``        the seam: ``Translator`` (one direction), ``StreamTranslator``, ``TranslateContext``.
- ``table``       the literal table of every translated direction; ``find_translator``.
- ``neutral/``    the middle both sides speak: stream parts and ``Reply``, finish reasons,
                  usage, error kinds, tool and response ids, Gemini thought signatures.
- ``read/``       upstream dialect -> neutral (SSE events and bodies -> parts / ``Reply``).
- ``write/``      neutral -> client dialect (parts / ``Reply`` -> client SSE bytes and bodies).
- ``request/``    request builders shared by several directions (Gemini contents, Responses -> Chat).
- ``directions/`` one module per (client, upstream) pair: its request mapping, and which
                  reader it pipes into which writer on the way back.
- ``passthrough`` the same-dialect case: no translation, only the few rewrites a
                  pass-through body needs (model name, usage read on the way).

``find_translator(client, upstream)`` is asked once per (channel, client dialect) when the
Snapshot is built, never per request.
"""

from apex.translate.base import StreamTranslator, TranslateContext, Translator
from apex.translate.table import find_translator

__all__ = ["StreamTranslator", "TranslateContext", "Translator", "find_translator"]
