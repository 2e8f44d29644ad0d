//! The release layout on a host and its atomic state changes: owned by live-deployment, so
//! that every binary reads exactly what the pipeline writes.

pub use live_deployment::{
    DeployState, RELEASE_RECORD, ReleaseLayout, ReleaseRecord, fsync_dir, release_id, write_atomic,
};
