//! CPU time read from `/proc`, for benches that split what an operation
//! costs between this process, a server it talks to, and PostgreSQL.

use std::sync::OnceLock;

/// CPU seconds (user + system) used so far by process `pid`, or by this
/// process when `None`; 0 when it cannot be read.
pub fn process_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    cpu_seconds(&std::fs::read_to_string(path).unwrap_or_default(), false)
}

/// CPU seconds used so far by every `postgres` process on the machine,
/// with their reaped children (the backends that have exited).
pub fn postgres_seconds() -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read_to_string(entry.path().join("stat"))
            && text.contains("(postgres)")
        {
            total += cpu_seconds(&text, true);
        }
    }
    total
}

/// utime + stime (+ cutime + cstime) from a `/proc/<pid>/stat` line.
fn cpu_seconds(stat: &str, with_children: bool) -> f64 {
    // Fields after the `(comm)`, which may contain spaces: state is the
    // first, utime the 12th, stime, cutime, cstime follow.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    if fields.len() < 4 {
        return 0.0;
    }
    let children = if with_children {
        fields[2] + fields[3]
    } else {
        0.0
    };
    (fields[0] + fields[1] + children) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
