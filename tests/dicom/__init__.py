"""DICOM front-end tests: real peers (dcmtk, pynetdicom) against the archive's listener."""
