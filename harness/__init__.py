"""The test harness: local servers, mirror, channel and stand-ins for the tests and the bench."""
