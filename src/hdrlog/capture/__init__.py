"""Sources of raw events: the live kernel programs and their ring buffers."""
