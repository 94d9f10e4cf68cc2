//! The rule language: parser, compiled policy and lint.
