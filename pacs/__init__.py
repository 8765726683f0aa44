"""The mini-PACS application: command line, settings, PKI, audit trail and DICOM service."""
