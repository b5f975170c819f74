"""API tokens: digests, limits (quota, rate, concurrency) and metering."""
