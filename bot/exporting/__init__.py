"""Admin exports (`python -m bot export`): date windows, pseudonyms, file formats, the run."""
