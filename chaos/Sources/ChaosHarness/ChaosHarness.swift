// The chaos harness lives in this module.
