//! Pooling (placeholder).
