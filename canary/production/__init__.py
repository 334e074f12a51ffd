"""The production command, `python serve.py`: nginx in front of the app's granian workers."""
