"""Measuring tools: bench, eval, load test, model export. The product never imports these."""
