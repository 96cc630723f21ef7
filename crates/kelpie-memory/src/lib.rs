//! Agent memory tiers (being built).
