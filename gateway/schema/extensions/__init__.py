"""Schema extensions: query limits, the validation cache and the choice of operation."""
