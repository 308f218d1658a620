//! conformance: black-box runner.
