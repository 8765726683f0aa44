"""The doctors' web viewer (Flask). Built in a later issue; nothing is served yet."""
