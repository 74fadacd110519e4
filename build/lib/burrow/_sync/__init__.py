# Generated from burrow/_async/__init__.py by `python -m burrow._unasync`; do not edit.
"""The clients: burrow/_async is written by hand, burrow/_sync generated from it by
burrow/_unasync.py."""
