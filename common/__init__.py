"""What every package may use and that uses no project package: the strict config loader (`common.config`)."""
