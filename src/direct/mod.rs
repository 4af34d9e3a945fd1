//! Placeholder until the direct connection lands.
