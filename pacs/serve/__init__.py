"""Composition roots that serve: the HTTPS server of the web viewer (:mod:`pacs.serve.https`)."""
