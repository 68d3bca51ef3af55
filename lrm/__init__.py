"""lrm package."""
