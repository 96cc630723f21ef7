//! LLM providers (being built).
