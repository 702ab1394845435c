"""The vpipe command line and demos."""
