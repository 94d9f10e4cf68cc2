//! Scan detection: per-source sliding windows over probes and negative answers.
