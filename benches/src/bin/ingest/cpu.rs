//! CPU time of this process and of its threads, from `/proc`.
//!
//! `/proc/self/stat` counts the CPU time of every thread the process ever
//! had (threads that exited included), in clock ticks of 1/100 s (Linux's
//! `USER_HZ`). The per-thread figures (`/proc/self/task/*/stat`) are for
//! showing where the time went; threads that exited are missing there.

use std::collections::BTreeMap;
use std::time::Duration;

/// Linux reports `/proc` CPU times in units of 1/`USER_HZ` seconds; it is
/// 100 on every architecture Linux runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU time of the whole process so far.
pub fn process_time() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| ticks(&stat))
        .map_or(Duration::ZERO, to_duration)
}

/// User plus system CPU time so far of each live thread, summed by thread
/// name (`tokio-runtime-w`, `rdk:broker1`, ...).
pub fn thread_times() -> BTreeMap<String, Duration> {
    let mut times = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return times;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(name), Some(ticks)) = (thread_name(&stat), ticks(&stat)) else {
            continue;
        };
        *times.entry(name).or_insert(Duration::ZERO) += to_duration(ticks);
    }
    times
}

/// User plus system CPU time so far of every live process in process group
/// `group` (another process: the broker).
pub fn group_time(group: u32) -> Duration {
    let mut total = 0;
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    for process in processes.flatten() {
        let is_pid = process
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else {
            continue;
        };
        if process_group(&stat) == Some(group) {
            total += ticks(&stat).unwrap_or(0);
        }
    }
    to_duration(total)
}

/// What each thread name used between two [`thread_times`] readings,
/// largest first, leaving out names that used less than 1% of `total`.
pub fn thread_delta(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
    total: Duration,
) -> Vec<(String, Duration)> {
    let mut used: Vec<(String, Duration)> = after
        .iter()
        .map(|(name, time)| {
            let earlier = before.get(name).copied().unwrap_or(Duration::ZERO);
            (name.clone(), time.saturating_sub(earlier))
        })
        .filter(|(_, time)| time.as_secs_f64() >= total.as_secs_f64() * 0.01)
        .collect();
    used.sort_by_key(|(_, time)| std::cmp::Reverse(*time));
    used
}

/// `utime + stime` of a `stat` line. Fields are counted after the
/// parenthesised command name, which may itself contain spaces.
fn ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': state (field 3) ... utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn process_group(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': state, ppid, pgrp.
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn thread_name(stat: &str) -> Option<String> {
    let start = stat.find('(')? + 1;
    let end = stat.rfind(')')?;
    Some(stat.get(start..end)?.to_string())
}

fn to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stat_line_with_spaces_in_the_name() {
        let stat = "42 (rdk:broker 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(ticks(stat), Some(300));
        assert_eq!(thread_name(stat).as_deref(), Some("rdk:broker 1"));
        assert_eq!(process_group(stat), Some(2));
    }
}
