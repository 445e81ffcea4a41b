"""pinsdk benchmarks: ``make bench`` (``python -m benchmarks``)."""
