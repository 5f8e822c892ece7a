"""Shared fakes and harnesses of the unit tests.

They live here, not in a test module, so that a test module imports no other test
module: moving or splitting one never breaks another, and trial never collects a
test class twice through an import.
"""
