//! The process's own CPU time and resident memory, read from `/proc/self` when scraped (Linux;
//! elsewhere the metrics are left out). Benchmarks read them to report the server's CPU beside
//! a load client sharing its cores, and dashboards to size pods.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::encode::single;

/// `/proc/[pid]/stat` counts CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 for
/// this interface on every architecture it exports it on.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds, from the text of `/proc/self/stat`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Resident bytes, from the text of `/proc/self/status` (`VmRSS:  1234 kB`).
fn resident_bytes(status: &str) -> Option<f64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The CPU seconds (user and system) this process has used, where `/proc` tells.
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

pub(super) fn encode(e: &mut DescriptorEncoder) -> fmt::Result {
    let read = |path| std::fs::read_to_string(path).ok();
    if let Some(seconds) = read("/proc/self/stat").as_deref().and_then(cpu_seconds) {
        let help = "CPU time (user and system) the process has used since it started";
        single(e, "process_cpu_seconds", help, ConstCounter::new(seconds))?;
    }
    if let Some(bytes) = read("/proc/self/status")
        .as_deref()
        .and_then(resident_bytes)
    {
        let help = "Resident memory of the process (VmRSS)";
        single(
            e,
            "process_resident_memory_bytes",
            help,
            ConstGauge::new(bytes),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (clerk (index) x) S 1 4242 4242 0 -1 4194304 1 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("4242 (short) S 1"), None);
    }

    #[test]
    fn resident_memory_is_read_in_bytes() {
        let status = "Name:\tclerk-index\nVmRSS:\t  2048 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(2048.0 * 1024.0));
    }

    #[test]
    fn this_process_reports_both() {
        if cfg!(target_os = "linux") {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
            assert!(cpu_seconds(&stat).is_some());
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            assert!(resident_bytes(&status).unwrap() > 0.0);
        }
    }
}
