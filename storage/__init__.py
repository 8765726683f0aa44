"""Encrypted, indexed storage of DICOM objects; imports nothing else of the project.

The entry point is :class:`storage.archive.Archive`. Beneath it: ``crypto`` (AES-GCM
envelope encryption), ``keys`` (the key directory), ``blobs`` (the encrypted files),
``header`` (reading a DICOM header), ``db`` (engine, schema, migrations), ``index``
(writing index rows) and ``matching`` (DICOM query matching in SQL).
"""
