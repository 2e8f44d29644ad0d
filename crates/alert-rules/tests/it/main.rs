//! The integration tests of `alert-rules`, in one test binary: each file of this directory is a
//! module, so the crate links one binary instead of one per file.

mod alertmanager;
mod demo_hub_defaults;
mod edge_rules;
mod engine_timeline;
mod http_sources_and_notifiers;
mod promtool_export;
mod served_defaults;
