"""Maintainer's tools for the template repository (not part of generated projects)."""
