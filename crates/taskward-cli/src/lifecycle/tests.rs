//! Unit tests of the lifecycle policy.
