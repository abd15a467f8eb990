//! Target `door_track`: the IMAP front door's in-step trackers
//! (`inlookup_imap::door::track`), which decide after login whether a backend connection may
//! be parked for the next session: `ClientTrack` cuts the client's bytes into command lines
//! and pass-through pieces, `ServerTrack` finds where the server's responses end. Both are
//! fed the input in chunks as reads return them.

use inlookup_imap::door::track::{ClientTrack, Piece, ServerTrack};

/// Bytes at the front of the input that are settings, not stream: one picks the side and
/// the points where the server completes a command, four the read sizes.
const SETTINGS: usize = 5;

/// What the client's side gave: the bytes passed on in order, the commands seen (tag,
/// name, literal) and whether it ended in step.
#[derive(Debug, PartialEq)]
struct ClientRun {
    passed: Vec<u8>,
    commands: Vec<(String, String, bool)>,
    in_step: bool,
}

/// Feeds the client's `stream` in reads of `sizes` (cycled). When `done_every` is not 0,
/// after every `done_every`-th read the server is said to have completed the last command
/// seen (as the relay does on its tagged reply). Checks as it goes:
///
/// - nothing is lost, reordered or invented: the pieces, in order, are the stream's bytes
///   from its start, and what is not passed on yet is a partial line (no LF in it);
/// - a command's line is a whole line (ends in LF, holds no other LF) whose first word is
///   its tag, and its name is the second word in upper case;
/// - while bytes are held back (a partial line), the connection is not in step.
fn client(stream: &[u8], sizes: &[usize], done_every: usize) -> ClientRun {
    let mut t = ClientTrack::default();
    let mut run = ClientRun { passed: Vec::new(), commands: Vec::new(), in_step: true };
    let mut pushed = 0;
    let mut reads = 0;
    let mut sizes = sizes.iter().cycle();
    while pushed < stream.len() {
        let n = sizes.next().copied().unwrap_or(1).clamp(1, stream.len() - pushed);
        let pieces = t.feed(&stream[pushed..pushed + n]).expect("no line here is over the limit");
        pushed += n;
        reads += 1;
        for p in pieces {
            match p {
                Piece::Raw(b) => run.passed.extend_from_slice(&b),
                Piece::Command { tag, name, line, literal } => {
                    assert!(line.ends_with(b"\n"), "a command line without its LF");
                    assert!(!line[..line.len() - 1].contains(&b'\n'), "two lines as one command");
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    let mut words = text.splitn(3, |b| *b == b' ');
                    let first = String::from_utf8_lossy(words.next().unwrap_or_default());
                    let second = String::from_utf8_lossy(words.next().unwrap_or_default());
                    assert_eq!(tag, first, "the tag is not the line's first word");
                    assert_eq!(name, second.to_ascii_uppercase(), "the name is not the second");
                    run.passed.extend_from_slice(&line);
                    run.commands.push((tag, name, literal));
                }
            }
        }
        assert_eq!(run.passed[..], stream[..run.passed.len()], "pieces that are not the stream");
        let held = &stream[run.passed.len()..pushed];
        assert!(!held.contains(&b'\n'), "a whole line held back");
        if !held.is_empty() {
            assert!(!t.in_step(), "bytes held back, yet in step");
        }
        if done_every != 0 && reads % done_every == 0 {
            if let Some((tag, _, _)) = run.commands.last() {
                t.server_done(tag);
            }
        }
    }
    run.in_step = t.in_step();
    run
}

/// Feeds the server's `stream` in reads of `sizes` (cycled); returns where each response
/// ends (offsets in the whole stream) with its first line's head. Checks: the ends grow,
/// each falls just after an LF of the stream, and the tracker is at a boundary exactly when
/// the stream so far ends where a response ended.
fn server(stream: &[u8], sizes: &[usize]) -> Vec<(usize, Vec<u8>)> {
    let mut t = ServerTrack::default();
    let mut ends: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut pushed = 0;
    let mut sizes = sizes.iter().cycle();
    while pushed < stream.len() {
        let n = sizes.next().copied().unwrap_or(1).clamp(1, stream.len() - pushed);
        for d in t.feed(&stream[pushed..pushed + n]) {
            assert!(d.end >= 1 && d.end <= n, "end {} outside a read of {n}", d.end);
            let at = pushed + d.end;
            assert_eq!(stream[at - 1], b'\n', "a response that does not end a line");
            assert!(ends.last().is_none_or(|(e, _)| *e < at), "ends that do not grow");
            ends.push((at, d.head));
        }
        pushed += n;
        let last = ends.last().map_or(0, |(e, _)| *e);
        assert_eq!(t.at_boundary(), last == pushed, "boundary at {pushed}, last end {last}");
    }
    ends
}

/// Target `door_track`: byte 0's low bit picks the side (0 client, 1 server) and its other
/// bits how often the server completes the client's last command (0: never); bytes 1–4 are
/// four read sizes (1 to 256); the rest is the stream. The checks of [`client`] or
/// [`server`] hold, and reading the stream in those chunks gives what reading it at once
/// gives: the same bytes and commands and the same final step on the client's side (when
/// no completion is interleaved), the same response ends and heads on the server's.
pub fn door_track(data: &[u8]) {
    if data.len() < SETTINGS {
        return;
    }
    let sizes: Vec<usize> = data[1..SETTINGS].iter().map(|b| 1 + usize::from(*b)).collect();
    let stream = &data[SETTINGS..];
    let whole = [stream.len().max(1)];
    if data[0] & 1 == 0 {
        let done_every = usize::from(data[0] >> 1) % 8;
        let chunked = client(stream, &sizes, done_every);
        if done_every == 0 {
            assert_eq!(chunked, client(stream, &whole, 0), "cuts changed the client's side");
        }
    } else {
        assert_eq!(server(stream, &sizes), server(stream, &whole), "cuts changed the responses");
    }
}
