"""report.html read without a browser: ``text_of`` gives the page's visible text."""

from __future__ import annotations

import re
from html import unescape


def text_of(page: str) -> str:
    """The page's visible text, roughly: tags and scripts gone, entities decoded."""
    body = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))
