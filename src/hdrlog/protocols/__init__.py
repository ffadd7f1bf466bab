"""Sans-IO protocol parsers: captured bytes and gaps in, typed messages out."""
