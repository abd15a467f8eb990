//! Many clients at once: no lost replies, no crossed replies.

use crate::harness::{Daemon, Opts, TestDb};
use inquery::Lookup;
use std::sync::{Arc, Barrier};

#[test]
fn two_hundred_concurrent_clients_each_get_their_own_answer() {
    let db = TestDb::new();
    let mut values = Vec::new();
    for i in 0..200 {
        values.push(format!(
            "('u{i}','example.com','$5$h{i}',{i},0,'User {i}','/home/u{i}','{i}',NULL)"
        ));
    }
    db.exec(&format!(
        "INSERT INTO indimail (pw_name,pw_domain,pw_passwd,pw_uid,pw_gid,pw_gecos,pw_dir,pw_shell,scram) VALUES {}",
        values.join(",")
    ));
    let d = Daemon::start(&db, Opts::default());
    let client = Arc::new(d.client());
    // Two rounds: the first all misses (through 4 workers), the second mostly hits, and
    // every client also asks for one user that is asked by others (coalescing).
    for round in 0..2 {
        let barrier = Arc::new(Barrier::new(200));
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let (c, b) = (client.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    let pw =
                        c.passwd(&format!("u{i}@example.com")).map_err(|e| format!("u{i}: {e}"))?;
                    let pw = pw.ok_or(format!("u{i}: not found"))?;
                    if pw.name != format!("u{i}") || pw.uid != i || pw.passwd != format!("$5$h{i}")
                    {
                        return Err(format!("u{i} got someone else's answer: {pw:?}"));
                    }
                    let shared =
                        c.passwd(&format!("u{}@example.com", i % 7)).map_err(|e| e.to_string())?;
                    if shared.map(|p| p.uid) != Some(i % 7) {
                        return Err(format!("u{i}: wrong shared answer"));
                    }
                    Ok(())
                })
            })
            .collect();
        let errors: Vec<String> =
            threads.into_iter().filter_map(|t| t.join().unwrap().err()).collect();
        assert!(
            errors.is_empty(),
            "round {round}: {} failures: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
    }
    let s = client.stats().unwrap();
    let pwd = &s.kinds["pwd"];
    assert_eq!(pwd.requests, 800);
    assert_eq!(pwd.hits + pwd.misses, 800);
    assert_eq!(pwd.misses - pwd.coalesced, 200, "each of the 200 users looked up in MySQL once");
    assert_eq!(s.refused_reply_paths + s.vanished_clients, 0);
    let left = std::fs::read_dir(&d.tmp).unwrap().count();
    assert_eq!(left, 0, "no reply FIFO left behind");
}
