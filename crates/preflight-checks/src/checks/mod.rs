//! The built-in checks, one module per concept. Each is a plain struct with a constructor that
//! takes the id and the target, builder methods for the optional settings, and defaults that
//! match what `cutover-preflight --list` documents.

mod command;
mod exposure;
mod files;
mod git;
mod host;
mod port;
mod secrets;
mod tls;

pub use command::{CommandCheck, RuntimeVersion};
pub use exposure::{Exposure, beyond_loopback, listening_addrs};
pub use files::{Artifact, DirWritable, FileModeCheck, FilesExist};
pub use git::{GitClean, NotTracked};
pub use host::{CpuCount, DiskFree, InodesFree, Memory, OpenFilesLimit};
pub use port::{Holder, PortFree, port_holders, socket_holders};
pub use secrets::SecretsResolve;
pub use tls::{CertSource, TlsCert};
