//! Whether a spec's resource limits can be had on this host, checked before anything starts:
//! a `LimitNOFILE` above the host's hard limit otherwise surfaces as `run node: Operation not
//! permitted` from deep inside a start.

use crate::{ProcError, ServiceSpec};

/// The largest open-files limit a service started by this process can be given, and what
/// sets it: the kernel's `fs.nr_open` for systemd and for a privileged supervisor (which may
/// raise its hard limit), else this process's hard `RLIMIT_NOFILE`.
pub fn nofile_ceiling(systemd: bool) -> Option<(u64, String)> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    // Effective uid 0 holds CAP_SYS_RESOURCE here (the supervisor never drops it before exec).
    let privileged = rustix::process::geteuid().is_root();
    if systemd || privileged {
        return nr_open.map(|n| (n, format!("the kernel's fs.nr_open ({n})")));
    }
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum?;
    Some((
        hard,
        format!("this user's hard RLIMIT_NOFILE ({hard}, `ulimit -Hn`)"),
    ))
}

/// Checks that `spec.limits.nofile` fits under [`nofile_ceiling`].
///
/// # Errors
/// [`ProcError::InvalidSpec`] naming the limit, the ceiling and how to raise it.
pub fn check_limits(spec: &ServiceSpec, systemd: bool) -> Result<(), ProcError> {
    let Some(wanted) = spec.limits.nofile else {
        return Ok(());
    };
    match nofile_ceiling(systemd) {
        Some((ceiling, what)) if wanted > ceiling => Err(ProcError::InvalidSpec {
            name: spec.name.clone(),
            reason: format!(
                "limits.nofile = {wanted} (RLIMIT_NOFILE, LimitNOFILE=) is above {what}: lower \
                 it, or raise the host's limit (limits.conf / `sysctl fs.nr_open`)"
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nofile_limit_above_the_ceiling_is_refused_naming_it_and_one_below_passes() {
        for systemd in [false, true] {
            let (ceiling, _) = nofile_ceiling(systemd).unwrap();
            let mut spec = ServiceSpec::new("hub", ["/bin/true"]);
            spec.limits.nofile = Some(ceiling + 1);
            let err = check_limits(&spec, systemd).unwrap_err().to_string();
            assert!(
                err.contains(&format!("limits.nofile = {}", ceiling + 1)),
                "{err}"
            );
            assert!(err.contains(&ceiling.to_string()), "{err}");
            spec.limits.nofile = Some(ceiling.min(1024));
            check_limits(&spec, systemd).unwrap();
            spec.limits.nofile = None;
            check_limits(&spec, systemd).unwrap();
        }
    }
}
