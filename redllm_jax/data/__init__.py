"""Data pipeline: sources, preprocessing, vocabulary, feature converters, input iterator."""
