//! The results as Markdown tables and as a hand-written SVG plot (no plotting crate).

use crate::case::{Case, IMAP_NOT_MEASURED};
use crate::results::Results;
use std::fmt::Write;

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn opt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |x| format!("{x:.2}"))
}

/// `results.md`. `findings` (docs/bench/findings.md, written by people) is appended.
pub fn markdown(r: &Results, findings: Option<&str>) -> String {
    let mut m = String::new();
    let s = r.settings.clone().unwrap_or_default();
    let _ = writeln!(m, "# inlookup benchmarks: results\n");
    let _ = writeln!(
        m,
        "Written by `scripts/bench.sh` (`{}`) on {}. Do not edit by hand: rerun the script. \
         The profile findings at the end come from `docs/bench/findings.md`. What each case \
         means: `docs/bench/README.md`. Raw numbers: `results.json`.\n",
        r.command, r.date
    );
    let _ = writeln!(m, "## Machine, versions, run\n");
    let _ = writeln!(m, "| | |\n| --- | --- |");
    let mc = &r.machine;
    let _ = writeln!(
        m,
        "| machine | {} × {}, {} MiB RAM, Linux {}, {} |",
        mc.cpus, mc.cpu, mc.mem_mib, mc.kernel, mc.os
    );
    let _ = writeln!(
        m,
        "| inlookup | {} (tree `{}`), release build |",
        r.versions.inlookup, r.versions.git
    );
    let _ = writeln!(
        m,
        "| MariaDB | {} ({}, pid {}) |",
        r.versions.mariadb,
        if r.mariadb_cpu.own_instance {
            "the bench's own instance from `scripts/mariadb.sh start`"
        } else {
            "a shared instance: its CPU includes other clients' queries"
        },
        r.mariadb_cpu.pid
    );
    let _ = writeln!(m, "| mysql crate | {} |", r.versions.mysql_crate);
    let _ = writeln!(m, "| rustc | {} |", r.versions.rustc);
    let _ = writeln!(
        m,
        "| matrix | {} rounds × client counts {:?} × {} cases × {} s, case order rotating |",
        s.rounds,
        s.clients,
        Case::MEASURED.len(),
        s.secs
    );
    let _ = writeln!(
        m,
        "| keys | PWD of {} generated users (`u0000001@bench.example` …), each client its own lane; \
         a PWD reply is {} bytes |",
        s.hot_keys, r.rss.reply_bytes.max(crate::echo::reply_bytes(&crate::setup::pwd_body(1)).len())
    );
    let env: Vec<String> = s.daemon_env.iter().map(|(k, v)| format!("{k}: `{v}`")).collect();
    let _ = writeln!(
        m,
        "| daemons | `target/release/inlookup` as `nobody`, defaults (5 workers) except {} |",
        env.join(", ")
    );
    let _ = writeln!(m, "| FIFOs | request and reply FIFOs in `{}` |", s.fifo_dir);
    let sh = &r.sharing;
    let shared = if sh.others_share >= 0.02 {
        format!(
            "**yes**: other processes used {:.1} s of CPU ({:.0} % of the machine) during the {:.0} s run; \
             loadavg {} → {}",
            sh.others_cpu_s,
            sh.others_share * 100.0,
            sh.wall_s,
            sh.loadavg[0],
            sh.loadavg[1]
        )
    } else {
        format!(
            "no: this run's own processes account for the machine's CPU time during the {:.0} s \
             run (others: {:.1} s, {:.1} %, within the accounting's error of about 1 %)",
            sh.wall_s,
            sh.others_cpu_s,
            sh.others_share * 100.0
        )
    };
    let _ = writeln!(m, "| machine shared | {shared} |");
    if r.db_build_s > 0.0 {
        let _ = writeln!(m, "| database | built in {:.1} s ({} users) |", r.db_build_s, s.users);
    } else {
        let _ = writeln!(m, "| database | reused from an earlier run ({} users) |", s.users);
    }

    let _ = writeln!(m, "\n## Goals\n");
    let _ = writeln!(
        m,
        "| goal | measured | ratio | bound | verdict |\n| --- | --- | --- | --- | --- |"
    );
    for g in &r.goals {
        let v = match g.verdict.as_str() {
            "met" => "**met**".to_string(),
            "missed" => "**missed**".to_string(),
            other => other.to_string(),
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {v} |",
            g.goal,
            g.measured,
            opt_ratio(g.ratio),
            g.bound
        );
    }

    let _ = writeln!(m, "\n## Latency, one client (µs)\n");
    let _ = writeln!(
        m,
        "| case | what | p50 | p99 | p99.9 | mean | requests | errors |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for case in Case::ALL {
        match r.cell(case, 1) {
            Some(c) => {
                let _ = writeln!(
                    m,
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
                    case,
                    case.describe(),
                    c.p50_us,
                    c.p99_us,
                    c.p999_us,
                    c.mean_us,
                    c.requests,
                    c.errors
                );
            }
            None if case == Case::Imap => {
                let _ = writeln!(
                    m,
                    "| imap | {} | {} | | | | | |",
                    case.describe(),
                    if r.imap_cells.is_empty() { IMAP_NOT_MEASURED } else { "see IMAP below" }
                );
            }
            None => {}
        }
    }

    let _ = writeln!(m, "\n## Throughput (requests/s) by client processes\n");
    by_clients(&mut m, &Case::ALL, &s.clients, |case, n| match r.cell(case, n) {
        Some(c) => format!(" {:.0} |", c.throughput),
        None => " – |".to_string(),
    });
    let _ = writeln!(
        m,
        "\nThroughput is the median over rounds of the sum of every client's own rate \
         (its successful requests over its own measured time)."
    );

    let _ = writeln!(m, "\n## Latency by client processes (µs: p50 / p99 / p99.9)\n");
    // A missing cell writes nothing here, as it always has.
    by_clients(&mut m, &Case::MEASURED, &s.clients, |case, n| {
        r.cell(case, n).map_or_else(String::new, |c| {
            format!(" {:.0} / {:.0} / {:.0} |", c.p50_us, c.p99_us, c.p999_us)
        })
    });
    let errs: Vec<String> = r
        .cells
        .iter()
        .filter(|c| c.errors > 0)
        .map(|c| {
            format!("{} × {}: {} errors (first: {})", c.case, c.clients, c.errors, c.first_error)
        })
        .collect();
    if !errs.is_empty() {
        let _ = writeln!(m, "\nErrors: {}", errs.join("; "));
    }
    let _ = writeln!(
        m,
        "\n![latency percentiles and throughput against client processes](results.svg)\n"
    );

    let _ = writeln!(m, "## CPU\n");
    let _ = writeln!(
        m,
        "CPU per request of the server process (utime + stime of the whole process from \
         `/proc/PID/stat`): inlookup answering hits, and for reference the echo server (the \
         floor) and the echo server doing inlookup's reply-path checks (`openat` under \
         FIFOTMPDIR with `O_NOFOLLOW` and `fstat`; a `stat` of the reply directory only when \
         it is not spelled as FIFOTMPDIR):\n"
    );
    let _ = writeln!(
        m,
        "| server | clients | requests | misses | reached the daemon | CPU (ms) | µs per request | ms per 100,000 | wall (s) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for d in &r.daemon_cpu {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.0} | {:.1} |",
            d.server,
            d.clients,
            d.hits,
            d.misses,
            d.reached_daemon,
            d.cpu_us / 1000.0,
            d.us_per_hit,
            d.ms_per_100k,
            d.wall_s
        );
    }
    let md = &r.mariadb_cpu;
    let _ = writeln!(
        m,
        "\nMariaDB's CPU (mariadbd's utime + stime, less its idle rate of {:.2} ms/s over the window) per 10,000 PWD lookups, {} client processes:\n",
        md.idle_ms_per_s, s.load_clients
    );
    let _ = writeln!(
        m,
        "| how | lookups | reached MariaDB | CPU (ms) | net of idle (ms) | ms per 10,000 lookups | wall (s) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for row in &md.rows {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |",
            row.label,
            row.lookups,
            row.reached_mysql,
            row.cpu_ms,
            row.cpu_ms_net,
            row.ms_per_10k,
            row.wall_s
        );
    }

    if !r.selects.is_empty() {
        let _ = writeln!(
            m,
            "\nStatements per miss: MariaDB's `Com_select` over misses of distinct users, one \
             client, the miss daemon (`CACHE_ENTRIES=0`; the real domain of the bench domain \
             is remembered apart from the cache, so only a domain's first miss asks \
             `aliasdomain`):\n"
        );
        let _ =
            writeln!(m, "| kind | misses | Com_select | per miss |\n| --- | ---: | ---: | ---: |");
        for s in &r.selects {
            let _ =
                writeln!(m, "| {} | {} | {} | {:.3} |", s.kind, s.misses, s.com_select, s.per_miss);
        }
    }
    let _ = writeln!(m, "\n## Memory\n");
    let rs = &r.rss;
    if rs.rows.is_empty() {
        let _ = writeln!(m, "Not measured in this run.");
    } else {
        let _ = writeln!(
            m,
            "VmRSS of an inlookup with `CACHE_ENTRIES={}`, less the pages of its shared-memory \
             cache (RssShmem: a budget of its own, SHARED_CACHE_MB; {} at the largest size): \
             the base is measured with its workers connected and the cache empty ({}); then \
             the cache is filled with PWD answers of generated users (key {} bytes, reply {} \
             bytes; fill took {:.0} s).\n",
            rs.capacity,
            mib(rs.shared_rss),
            mib(rs.base),
            rs.key_bytes,
            rs.reply_bytes,
            rs.fill_s
        );
        let _ = writeln!(m, "| cached PWD entries | VmRSS | over base | bytes per entry |\n| ---: | ---: | ---: | ---: |");
        for row in &rs.rows {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:.0} |",
                row.entries,
                mib(row.rss),
                mib(row.over_base.max(0) as u64),
                row.per_entry
            );
        }
        if let Some(mg) = rs.marginal_per_entry {
            let _ = writeln!(
                m,
                "\nMarginal cost between the two largest sizes: {mg:.0} bytes per entry. Per \
                 entry, the smaller sizes carry more: costs that do not grow with the \
                 cache (allocator state grown by the fill's traffic, the doubling growth of \
                 the entry vector and the hash table) weigh more on fewer entries; not \
                 profiled further."
            );
        }
    }

    if !r.whatif.is_empty() {
        let _ = writeln!(m, "\n## What-if runs for the profile (one client, µs)\n");
        let _ = writeln!(
            m,
            "The same rounds and seconds as the matrix, one client, alternating. \"no client \
             sleep\" is `benches/compare/lean.rs`: `inquery::Client::raw` step for step but \
             reading as soon as `poll` reports the reply; \"+ daemon's reply checks\" is the \
             echo server doing inlookup's reply-path syscalls.\n"
        );
        let _ = writeln!(m, "| run | p50 | p90 | p99 | p99.9 | mean | requests |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for c in &r.whatif {
            let _ = writeln!(
                m,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                c.case, c.p50_us, c.p90_us, c.p99_us, c.p999_us, c.mean_us, c.requests
            );
        }
    }

    let _ = writeln!(m, "\n## IMAP\n");
    if r.imap_cells.is_empty() {
        let _ = writeln!(m, "{}.", r.imap_missing());
    } else {
        let _ = writeln!(
            m,
            "One client, `{}` per request, the six runs alternating with the same rounds \
             and seconds as the matrix. *inlookup session*: `inquery::Client::imap_command` \
             on a session logged in once before timing (inlookup keeps the IMAP connection). \
             *fresh login*: connect to Dovecot, `LOGIN`, the command, `LOGOUT`, as a program \
             without a pool does. *own open connection*: the command on a connection the \
             client logged in once itself, no inlookup: Dovecot's own time for it, the floor \
             of any pool. Dovecot {}, started by `scripts/dovecot.sh`: *forking* is \
             Debian's default (a login and a mail process per connection), \
             *process-reusing* is `DOVECOT_REUSE=1` (`service_count = 0` for imap-login, \
             1000 for imap). µs:\n",
            crate::imap::COMMAND,
            if r.dovecot.is_empty() { "?" } else { r.dovecot.as_str() }
        );
        let _ = writeln!(m, "| run | p50 | p90 | p99 | p99.9 | mean | requests | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for c in &r.imap_cells {
            let _ = writeln!(
                m,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
                c.case, c.p50_us, c.p90_us, c.p99_us, c.p999_us, c.mean_us, c.requests, c.errors
            );
        }
        imap_throughput(&mut m, r);
    }

    if let Some(f) = findings {
        let _ = writeln!(m, "\n{}", f.trim_end());
    }
    m
}

/// The IMAP runs' throughput table (runs × client processes), when the run measured it.
fn imap_throughput(m: &mut String, r: &Results) {
    if r.imap_throughput.is_empty() {
        return;
    }
    let st = &r.imap_setup;
    let _ = writeln!(m, "\n### IMAP throughput (requests/s) by client processes\n");
    let _ = writeln!(
        m,
        "The same six runs with N client processes at once, the same rounds and seconds, \
         the order rotating per client count as in the matrix. Each client has its own \
         session key or connection and logs in before timing starts (a fresh-login \
         client logs in once per request, as above). So that no pool or limit is what is \
         measured, the two inlookup daemons ran with `{}` (sessions of earlier runs stay \
         in a pool, idle, until a login reclaims them) and the Dovecots with `{}` \
         (`mail_max_userip_connections`, Dovecot's 10 by default, and the imap and \
         imap-login process limits). Throughput as in the matrix: the median over rounds \
         of the sum of every client's own rate.\n",
        st.daemon_env, st.dovecot_env
    );
    let _ = write!(m, "| run |");
    for c in &st.clients {
        let _ = write!(m, " {c} |");
    }
    let _ = write!(m, " errors |\n| --- |");
    for _ in &st.clients {
        let _ = write!(m, " ---: |");
    }
    let _ = writeln!(m, " ---: |");
    let mut errs = Vec::new();
    for (label, ..) in crate::imap::RUNS {
        let _ = write!(m, "| {label} |");
        let mut errors = 0;
        for &n in &st.clients {
            match r.imap_throughput.iter().find(|c| c.case == label && c.clients == n) {
                Some(c) => {
                    let _ = write!(m, " {:.0} |", c.throughput);
                    errors += c.errors;
                    if c.errors > 0 {
                        errs.push(format!(
                            "{label} × {n}: {} (first: {})",
                            c.errors, c.first_error
                        ));
                    }
                }
                None => {
                    let _ = write!(m, " – |");
                }
            }
        }
        let _ = writeln!(m, " {errors} |");
    }
    if !errs.is_empty() {
        let _ = writeln!(m, "\nErrors: {}", errs.join("; "));
    }
}

/// A table with one row per case and one column per client count: `cell(case, clients)`
/// gives each cell's text, its leading space and closing `|` included.
fn by_clients(
    m: &mut String,
    cases: &[Case],
    clients: &[usize],
    cell: impl Fn(Case, usize) -> String,
) {
    let _ = write!(m, "| case |");
    for c in clients {
        let _ = write!(m, " {c} |");
    }
    let _ = write!(m, "\n| --- |");
    for _ in clients {
        let _ = write!(m, " ---: |");
    }
    m.push('\n');
    for &case in cases {
        let _ = write!(m, "| {case} |");
        for &n in clients {
            m.push_str(&cell(case, n));
        }
        m.push('\n');
    }
}

/// A log-scale axis over whole decades covering `lo..=hi`.
struct LogAxis {
    lo: f64,
    hi: f64,
}

impl LogAxis {
    /// Whole decades around `lo..=hi`; 1..10 when there is nothing finite to show.
    fn covering(lo: f64, hi: f64) -> LogAxis {
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi >= lo) {
            return LogAxis { lo: 1.0, hi: 10.0 };
        }
        let lo = 10f64.powf(lo.log10().floor());
        let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
        LogAxis { lo, hi }
    }

    /// 0..=1 along the axis.
    fn at(&self, v: f64) -> f64 {
        (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
    }

    fn decades(&self) -> Vec<f64> {
        let n = (self.hi / self.lo).log10().round().clamp(1.0, 12.0) as i32;
        (0..=n).map(|k| self.lo * 10f64.powi(k)).collect()
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// Panel geometry.
struct Panel {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// `results.svg`: latency percentiles (left) and throughput (right) against client
/// processes, log–log, one colour per case.
pub fn svg(r: &Results) -> String {
    let clients: Vec<usize> = r.settings.as_ref().map(|s| s.clients.clone()).unwrap_or_default();
    let (w, h) = (1000.0, 500.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">inlookup benchmarks, {} ({} × {})</text>"#,
        w / 2.0,
        xml(&r.date),
        r.machine.cpus,
        xml(&r.machine.cpu)
    );
    let lat = Panel { x: 80.0, y: 45.0, w: 380.0, h: 340.0 };
    let thr = Panel { x: 580.0, y: 45.0, w: 380.0, h: 340.0 };
    let cells: Vec<_> = r.cells.iter().filter(|c| c.requests > 0).collect();
    let lat_ax = LogAxis::covering(
        cells.iter().map(|c| c.p50_us).fold(f64::INFINITY, f64::min),
        cells.iter().map(|c| c.p999_us).fold(0.0, f64::max),
    );
    let thr_ax = LogAxis::covering(
        cells.iter().map(|c| c.throughput).fold(f64::INFINITY, f64::min),
        cells.iter().map(|c| c.throughput).fold(0.0, f64::max),
    );
    let xpos = |p: &Panel, c: usize| -> f64 {
        let (a, b) = (
            (*clients.first().unwrap_or(&1) as f64).log2(),
            (*clients.last().unwrap_or(&1) as f64).log2(),
        );
        let t = if b > a { ((c as f64).log2() - a) / (b - a) } else { 0.5 };
        p.x + 20.0 + t * (p.w - 40.0)
    };
    let ypos = |p: &Panel, ax: &LogAxis, v: f64| p.y + p.h - ax.at(v) * p.h;
    for (p, ax, title, unit) in [
        (&lat, &lat_ax, "latency (p50 solid, p99 dashed, p99.9 dotted)", "µs"),
        (&thr, &thr_ax, "throughput", "requests/s"),
    ] {
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            p.x, p.y, p.w, p.h
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{title}</text>"#,
            p.x + p.w / 2.0,
            p.y - 6.0
        );
        for d in ax.decades() {
            let y = ypos(p, ax, d);
            let _ = writeln!(
                s,
                r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                p.x,
                p.x + p.w,
                p.x - 5.0,
                y + 4.0,
                fmt_num(d)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{unit}</text>"#,
            p.x - 50.0,
            p.y + p.h / 2.0,
            p.x - 50.0,
            p.y + p.h / 2.0
        );
        for &c in &clients {
            let x = xpos(p, c);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#e5e5e5"/><text x="{x:.1}" y="{}" text-anchor="middle">{c}</text>"##,
                p.y,
                p.y + p.h,
                p.y + p.h + 15.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">client processes</text>"#,
            p.x + p.w / 2.0,
            p.y + p.h + 32.0
        );
    }
    for case in Case::MEASURED {
        let series: Vec<_> =
            clients.iter().filter_map(|&n| r.cell(case, n)).filter(|c| c.requests > 0).collect();
        if series.is_empty() {
            continue;
        }
        let col = case.colour();
        for (pick, dash) in
            [(0, ""), (1, r#" stroke-dasharray="6,3""#), (2, r#" stroke-dasharray="2,3""#)]
        {
            let pts: Vec<String> = series
                .iter()
                .map(|c| {
                    let v = [c.p50_us, c.p99_us, c.p999_us][pick];
                    format!("{:.1},{:.1}", xpos(&lat, c.clients), ypos(&lat, &lat_ax, v))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{col}" stroke-width="{}"{dash}/>"#,
                pts.join(" "),
                if pick == 0 { 2 } else { 1 }
            );
        }
        let pts: Vec<String> = series
            .iter()
            .map(|c| {
                format!("{:.1},{:.1}", xpos(&thr, c.clients), ypos(&thr, &thr_ax, c.throughput))
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{col}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        for c in &series {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{col}"/>"#,
                xpos(&thr, c.clients),
                ypos(&thr, &thr_ax, c.throughput)
            );
        }
    }
    // Legend.
    let mut x = 80.0;
    let y = h - 40.0;
    for case in Case::MEASURED {
        let label = case.to_string();
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 18.0,
            case.colour(),
            x + 22.0,
            y + 4.0,
            xml(&label)
        );
        x += 30.0 + 6.3 * label.chars().count() as f64 + 14.0;
    }
    s.push_str("</svg>\n");
    s
}

fn xml(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
