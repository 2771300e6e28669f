"""Reports: result tables and figures, built only from score files and run settings."""
