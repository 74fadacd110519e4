"""The clients: burrow/_async is written by hand, burrow/_sync generated from it by
burrow/_unasync.py."""
