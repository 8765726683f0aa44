"""Web front-end tests: the Flask viewer, DICOMweb, the HTTPS server and a real Chromium."""
