//! `/proc/PID/stat`.

/// The fields of `/proc/PID/stat` that cutover uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The pid.
    pub pid: u32,
    /// The state letter (`R`, `S`, `D`, `Z`, …).
    pub state: char,
    /// Parent pid.
    pub ppid: u32,
    /// Process group id.
    pub pgrp: u32,
    /// Session id.
    pub session: u32,
    /// User-mode CPU time in clock ticks (field 14).
    pub utime: u64,
    /// Kernel-mode CPU time in clock ticks (field 15).
    pub stime: u64,
    /// Start time in clock ticks since boot (field 22).
    pub start_time: u64,
}

impl ProcStat {
    /// Reads `/proc/PID/stat`; `None` when there is no such process.
    pub fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(pid, &text)
    }

    /// Every process that `/proc` lists and that could be read (a snapshot: a process may exit
    /// or fork right after it).
    pub fn all() -> Vec<Self> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(Self::read)
            .collect()
    }

    /// Parses the text of `/proc/PID/stat`. The command name (field 2) may hold spaces and
    /// parentheses, so the fields are counted from the last `)`.
    pub fn parse(pid: u32, text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state); field N is fields[N - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse().ok());
        Some(Self {
            pid,
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
            session: fields.get(3)?.parse().ok()?,
            utime: field(14)?,
            stime: field(15)?,
            start_time: field(22)?,
        })
    }

    /// Whether the process can still run (not a zombie or dead).
    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 \
                    123456 1000 100 18446744073709551615";
        let s = ProcStat::parse(4242, line).unwrap();
        assert_eq!((s.state, s.ppid, s.pgrp, s.session), ('S', 1, 4242, 4242));
        assert_eq!((s.utime, s.stime, s.start_time), (7, 3, 123456));
        assert!(s.is_running());
        assert!(
            !ProcStat::parse(4242, &line.replace(") S ", ") Z "))
                .unwrap()
                .is_running()
        );
        assert!(ProcStat::parse(1, "garbage").is_none());
    }

    #[test]
    fn reads_this_process() {
        let me = ProcStat::read(std::process::id()).unwrap();
        assert!(me.is_running());
        assert!(me.start_time > 0);
        assert!(ProcStat::read(u32::MAX).is_none());
        assert!(ProcStat::all().iter().any(|s| s.pid == me.pid));
    }
}
