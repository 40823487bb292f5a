"""tincoso hil_tests."""
