"""HTTP sources: routes, authentication and decoding into model types."""
