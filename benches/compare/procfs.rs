//! What `/proc` says about a process and the machine: CPU ticks, resident memory, load.

use crate::Res;
use std::time::Duration;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of a whole process (every thread, live or exited), in ticks.
pub fn cpu_ticks(pid: u32) -> Res<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = s.rsplit_once(')').ok_or("bad /proc/PID/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = f.get(11).ok_or("short stat")?.parse()?;
    let stime: u64 = f.get(12).ok_or("short stat")?.parse()?;
    Ok(utime + stime)
}

/// Ticks as a duration.
pub fn ticks(t: u64) -> Duration {
    Duration::from_micros(t * 1_000_000 / clk_tck())
}

/// VmRSS of a process, in bytes.
pub fn vm_rss(pid: u32) -> Res<u64> {
    let (rss, shmem) = (status_kb(pid, "VmRSS:")?, status_kb(pid, "RssShmem:").unwrap_or(0));
    // The shared-memory cache's pages (a tmpfs file, so RssShmem) are its own budget
    // (SHARED_CACHE_MB), measured apart: `shmem_rss`.
    Ok((rss - shmem.min(rss)) * 1024)
}

/// The pages of shared memory (the shared cache's file on tmpfs) in a process's RSS.
pub fn shmem_rss(pid: u32) -> Res<u64> {
    Ok(status_kb(pid, "RssShmem:")? * 1024)
}

fn status_kb(pid: u32, field: &str) -> Res<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s.lines().find(|l| l.starts_with(field)).ok_or(format!("no {field}"))?;
    Ok(line.split_whitespace().nth(1).ok_or(format!("bad {field}"))?.parse()?)
}

/// The machine's CPU time so far: (busy, total) in ticks, over all CPUs.
pub fn machine_ticks() -> Res<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat")?;
    let line = s.lines().next().ok_or("empty /proc/stat")?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// CPU time of this process and of every child it has reaped (workers, daemons, the echo
/// server once they are waited for).
pub fn own_and_children_cpu() -> Duration {
    let get = |who| {
        // SAFETY: getrusage writes one rusage struct, which we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid `who` and a valid pointer.
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// The machine, for the report.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Memory, in MiB.
    pub mem_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Distribution.
    pub os: String,
}

/// Reads CPU, memory, kernel and distribution.
pub fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_mib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        mem_mib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        os,
    }
}
