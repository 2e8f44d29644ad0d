//! What is live under a cutover layout, for every binary that acts on a deployment.
//!
//! The deploy pipeline writes the truth about a deployment in a few places: `<root>/current`
//! (the live release), `<root>/state/deploy-state.json` (its slot, the good and failed
//! releases, the warm standby), each release's `release.json`, and the process manager's own
//! state (pid and start time per slot). This crate owns those files' shapes and where they
//! live ([`ReleaseLayout`], [`DeployState`], [`ReleaseRecord`]), the tables that say what is
//! deployed (`[service]`, `[layout]`: [`ServiceConfig`], [`LayoutConfig`]) and the slots
//! ([`Slot`], [`StrategyKind`]). The pipeline writes through it; [`Deployment::live`] reads
//! through it. So `cutover-probe`, `cutover-alerts`, `cutover-monitor`, `cutover-proc`,
//! `cutover-edge` and `cutover-backup` need nothing but `--manifest` to act on what is live,
//! without depending on the whole pipeline, and no binary guesses a port.
//!
//! # Example
//! ```
//! use live_deployment::{Deployment, Role};
//!
//! let dir = tempfile::tempdir()?;
//! let manifest = manifest_loader::Manifest::from_str(dir.path().join("cutover.toml"), r#"
//!     [service]
//!     name = "hub"
//!     start = ["{release}/bin/hub", "--listen", "{host}:{port}"]
//!     port = 7000
//!     standby_port = 7001
//!     [layout]
//!     root = "srv"
//!     [proxy]
//!     kind = "nginx"
//!     listen_http = ["127.0.0.1:8080"]
//!     control_listen = "127.0.0.1:8081"
//! "#)?;
//! let deployment = Deployment::from_manifest(&manifest)?;
//! assert_eq!(deployment.paths().backups, dir.path().join("srv/backups"));
//! assert_eq!(deployment.paths().proxy, dir.path().join("srv/proxy"));
//! assert_eq!(deployment.public_url().as_deref(), Some("http://127.0.0.1:8080"));
//!
//! let live = deployment.live()?;
//! assert!(!live.is_deployed());
//! assert!(live.describe().starts_with("nothing is deployed"));
//! assert!(live.slots.iter().all(|s| s.role == Role::Idle));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
pub mod layout;
mod service;
mod view;

pub use error::LiveError;
pub use layout::{
    CanaryProgress, DeployState, RELEASE_RECORD, ReleaseLayout, ReleaseRecord, fsync_dir,
    release_id, write_atomic,
};
pub use service::{ArtifactConfig, Exposure, LayoutConfig, ServiceConfig, Slot, StrategyKind};
pub use view::{
    Deployment, LiveState, Paths, Role, SlotProcess, SlotView, backup_dest, backup_sources,
    proxy_dir_for, root_for, strategy_for,
};
