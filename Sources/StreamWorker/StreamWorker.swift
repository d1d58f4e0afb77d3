// The worker runtime lives in this module; see the files beside this one.
