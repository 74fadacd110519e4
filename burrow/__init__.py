"""burrow."""
