//! Replays every file of `fuzz/corpus/<target>/` through its target's checks, on stable
//! Rust, as part of `cargo test`: the seeds and everything fuzzing found worth keeping
//! (crashes that were fixed included) stay passing.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(target)
}

#[test]
fn every_corpus_file_passes_its_target() {
    for (target, check) in inlookup_fuzz_checks::TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: an empty corpus", dir.display());
        for file in &files {
            let data = std::fs::read(file).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails its checks", file.display());
        }
        println!("{target}: {} corpus files pass", files.len());
    }
}

#[test]
fn no_corpus_dir_without_a_target() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    for entry in std::fs::read_dir(&root).expect("fuzz/corpus") {
        let name = entry.expect("an entry").file_name().to_string_lossy().into_owned();
        assert!(
            inlookup_fuzz_checks::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} has no target"
        );
    }
}
