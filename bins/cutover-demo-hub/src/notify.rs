//! systemd-style integration: a listening socket handed over with `LISTEN_FDS`/`LISTEN_PID`,
//! and `READY=1` sent to `NOTIFY_SOCKET` once the service is ready.

use std::os::unix::net::UnixDatagram;

/// Takes the first socket handed over by socket activation, if any. Must run before threads
/// start, because it clears `LISTEN_FDS`/`LISTEN_PID` so children do not inherit them.
pub(crate) fn take_activated_listener() -> std::io::Result<Option<std::net::TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    fds.take_tcp_listener(0)
}

/// Sends `READY=1` to `NOTIFY_SOCKET` when it is set. Failures are logged, never fatal: a
/// supervisor that asked for notification will notice the missing message by itself.
pub(crate) fn ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send(&path, b"READY=1\nSTATUS=ready\n") {
        tracing::warn!(%err, socket = ?path, "could not send READY=1 to NOTIFY_SOCKET");
    }
}

fn send(path: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(message, &addr)?;
    } else {
        socket.send_to(message, std::path::Path::new(path))?;
    }
    Ok(())
}
