"""The DICOM network service: TLS contexts, association policy, DIMSE handlers and the server."""
