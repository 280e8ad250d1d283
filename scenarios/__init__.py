"""Scenario YAML files shipped with talbench (data only)."""
