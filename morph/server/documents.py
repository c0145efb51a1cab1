"""Each client document's analyzer on the server, so that a keystroke's re-analysis costs the edit.

A client names its document with an id of its own choosing (a random token per editor). The store keeps one
Analyzer per id (its block cache and key/value windows), the last analyses sent for it (so that the next
can travel as a delta, morph.server.wire), and a cancel flag: a newer request for a document stops the
older one at its next step, as a newer edit does in the editor. The least recently used documents are
dropped past `max_documents`: a dropped document's next request costs one analysis from scratch.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from morph.features.analysis import Analysis, Analyzer

KEPT_REVISIONS = 2  # analyses kept per document as bases for deltas: the last partial and the last final


@dataclass
class Document:
    analyzer: Analyzer
    sent: OrderedDict[int, Analysis] = field(default_factory=OrderedDict)
    cancel: threading.Event = field(default_factory=threading.Event)
    text: str | None = None  # the last text a request sent (edits are made against it)

    def base(self, revision: int | None) -> tuple[int, Analysis] | None:
        if revision is None or revision not in self.sent:
            return None
        return revision, self.sent[revision]

    def remember(self, revision: int, analysis: Analysis) -> None:
        self.sent[revision] = analysis
        while len(self.sent) > KEPT_REVISIONS:
            self.sent.popitem(last=False)

    def supersede(self) -> threading.Event:
        """Stop the request running for this document (if any) and give the new one its own flag."""
        self.cancel.set()
        self.cancel = threading.Event()
        return self.cancel


class DocumentStore:
    """Analyzers by document id, least recently used dropped first. Thread-safe."""

    def __init__(self, new_analyzer: Callable[[], Analyzer], max_documents: int = 32) -> None:
        """`new_analyzer`: an analyzer of its own for each document (Engine.new_analyzer)."""
        self.new_analyzer = new_analyzer
        self.max_documents = max_documents
        self._documents: OrderedDict[str, Document] = OrderedDict()
        self._lock = threading.Lock()
        # revisions start at random so that one from an earlier run of the server never names an analysis
        self._revision = secrets.randbits(40)

    def get(self, document_id: str) -> Document:
        with self._lock:
            document = self._documents.get(document_id)
            if document is None:
                document = Document(self.new_analyzer())
                self._documents[document_id] = document
            self._documents.move_to_end(document_id)
            while len(self._documents) > self.max_documents:
                _, dropped = self._documents.popitem(last=False)
                dropped.cancel.set()
            return document

    def fresh(self) -> Document:
        """A document of its own for a one-off analysis (not kept)."""
        return Document(self.new_analyzer())

    def drop(self, document_id: str) -> None:
        with self._lock:
            document = self._documents.pop(document_id, None)
        if document is not None:
            document.cancel.set()

    def next_revision(self) -> int:
        with self._lock:
            self._revision += 1
            return self._revision

    def __len__(self) -> int:
        return len(self._documents)
