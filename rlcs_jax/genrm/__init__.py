"""genrm package."""
